// The performance tables: columns, server-side sort, search and paging, and CSV export.

import { change, count, dateTime, h, money, percent, rate } from "./format.js";

const chip = (value) => (value ? h("span", { class: `chip ${String(value).toLowerCase()}` }, value) : "—");
const pctChange = (value) => {
  const c = change(value);
  return h("span", { class: c.direction === "up" ? "pos" : c.direction === "down" ? "neg" : "", title: c.label }, c.text);
};

// key: the API's field (and sort column); sortable: whether the API sorts by it.
const MESSAGE_FIGURES = [
  { key: "recipients", label: "Recipients", num: true, fmt: count, sortable: true },
  { key: "open_rate", label: "Open rate", num: true, fmt: rate, sortable: true },
  { key: "click_rate", label: "Click rate", num: true, fmt: rate, sortable: true },
  { key: "conversions", label: "Orders", num: true, fmt: count, sortable: true },
  { key: "revenue", label: "Revenue", num: true, fmt: money, sortable: true },
  { key: "revenue_per_recipient", label: "Per recipient", num: true, fmt: money, sortable: true },
  { key: "revenue_change_pct", label: "vs previous", num: true, node: pctChange, sortable: true },
  { key: "unsubscribes", label: "Unsubs", num: true, fmt: count, sortable: true },
];

export const TABLES = {
  campaigns: {
    title: "Campaigns",
    defaultSort: "revenue",
    columns: [
      { key: "name", label: "Campaign", name: true, sortable: true },
      { key: "channel", label: "Channel", node: chip, sortable: true },
      { key: "send_time", label: "Sent", fmt: (v, tz) => dateTime(v, tz), sortable: true },
      // A campaign is sent once: its revenue in the previous range is almost always 0, so a
      // "vs previous" column would read "n/a" on every row. Flows keep it.
      ...MESSAGE_FIGURES.filter((c) => c.key !== "revenue_change_pct"),
    ],
    empty: "No campaigns were sent in this range.",
  },
  flows: {
    title: "Flows",
    defaultSort: "revenue",
    columns: [
      { key: "name", label: "Flow", name: true, sortable: true },
      { key: "status", label: "Status", node: chip, sortable: true },
      ...MESSAGE_FIGURES,
    ],
    empty: "No flow sent a message in this range.",
  },
  forms: {
    title: "Forms",
    defaultSort: "submissions",
    columns: [
      { key: "name", label: "Form", name: true, sortable: true },
      { key: "status", label: "Status", node: chip, sortable: true },
      { key: "views", label: "Views", num: true, fmt: count, sortable: true },
      { key: "submissions", label: "Submissions", num: true, fmt: count, sortable: true },
      { key: "submission_rate", label: "Submit rate", num: true, fmt: rate, sortable: true },
      { key: "previous_submissions", label: "Previous", num: true, fmt: count, sortable: true },
      { key: "submissions_change_pct", label: "vs previous", num: true, node: pctChange, sortable: true },
    ],
    empty: "No signup forms yet.",
  },
  segments: {
    title: "Segments",
    defaultSort: "profile_count",
    columns: [
      { key: "name", label: "Segment", name: true, sortable: true },
      { key: "profile_count", label: "Profiles", num: true, fmt: count, sortable: true },
      { key: "share_pct", label: "Share of profiles", num: true, fmt: percent, sortable: true },
      { key: "members_revenue", label: "Members' revenue", num: true, fmt: money, sortable: false, optional: true },
      { key: "updated", label: "Updated", fmt: (v, tz) => dateTime(v, tz), sortable: true },
    ],
    empty: "No segments yet.",
    // Segment sizes are today's, whatever the range.
    ranged: false,
  },
};

export function visibleColumns(name, rows) {
  return TABLES[name].columns.filter((c) => !c.optional || rows.some((r) => r[c.key] !== null && r[c.key] !== undefined));
}

export function renderHead(thead, name, columns, sort, order, onSort) {
  const row = h("tr");
  for (const col of columns) {
    const sorted = col.key === sort;
    const aria = sorted ? (order === "asc" ? "ascending" : "descending") : null;
    const th = h("th", { scope: "col", class: col.num ? "num" : null, "aria-sort": aria });
    if (col.sortable) {
      th.append(h("button", {
        type: "button",
        "data-sort": col.key,
        title: `Sort by ${col.label.toLowerCase()}`,
        onclick: () => onSort(col.key),
      }, col.label));
    } else {
      th.append(col.label);
    }
    row.append(th);
  }
  thead.replaceChildren(row);
}

export function renderBody(tbody, columns, rows, tz, linkFor = null) {
  tbody.replaceChildren(
    ...rows.map((r) => h("tr", { "data-id": r.id },
      ...columns.map((col) => {
        const value = r[col.key];
        let content;
        if (col.node) content = col.node(value);
        else if (value === null || value === undefined) content = "—";
        else if (col.fmt) content = col.fmt(value, tz);
        else content = String(value);
        if (col.name && linkFor) content = h("a", { href: linkFor(r), title: `Open ${r.name} in detail` }, content);
        return h("td", { class: col.name ? "name" : col.num ? "num" : null, "data-col": col.key }, content);
      }),
    )),
  );
}

export function renderMessage(tbody, columns, text, { error = false, retry = null } = {}) {
  const cell = h("td", { class: `empty${error ? " err-text" : ""}`, colspan: String(columns.length || 1) }, text);
  if (retry) cell.append(" ", h("button", { type: "button", class: "btn small", onclick: retry }, "Retry"));
  tbody.replaceChildren(h("tr", {}, cell));
}

function csvCell(value) {
  if (value === null || value === undefined) return "";
  let text = typeof value === "object" ? JSON.stringify(value) : String(value);
  // Keep spreadsheet programs from running a name as a formula.
  if (/^[=+\-@\t\r]/.test(text) && !/^-?\d/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The rows as CSV with the API's field names and exact values (money and rates unrounded). */
export function toCsv(name, rows) {
  const columns = ["id", ...TABLES[name].columns.map((c) => c.key)];
  const extra = rows.length ? Object.keys(rows[0]).filter((k) => !columns.includes(k)) : [];
  const all = [...columns, ...extra];
  const lines = [all.join(","), ...rows.map((r) => all.map((k) => csvCell(r[k])).join(","))];
  return `${lines.join("\r\n")}\r\n`;
}

/** Rows as CSV with the given API field names, exact values. */
export function rowsCsv(columns, rows) {
  const lines = [columns.join(","), ...rows.map((r) => columns.map((k) => csvCell(r[k])).join(","))];
  return `${lines.join("\r\n")}\r\n`;
}

export function download(filename, text) {
  const blob = new Blob([text], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
