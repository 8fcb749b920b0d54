// The Customers page: cohorts, RFM, CLV, products and the funnel for one range of store dates.
// Every figure comes from this server's API; each panel exports exactly what it shows as CSV.

import { api, ApiError, setKey } from "./api.js";
import * as fmt from "./format.js";
import { download } from "./tables.js";

const { h } = fmt;
const $ = (id) => document.getElementById(id);
const DATE = /^\d{4}-\d{2}-\d{2}$/;
const exports = {};

function csvCell(value) {
  if (value === null || value === undefined) return "";
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text) && !/^-?\d/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function csv(columns, rows) {
  const lines = [columns.join(","), ...rows.map((r) => columns.map((c) => csvCell(r[c])).join(","))];
  return `${lines.join("\r\n")}\r\n`;
}

function setState(panel, value) {
  const el = document.querySelector(`[data-panel="${panel}"]`);
  if (el) el.dataset.state = value;
}

function table(el, columns, rows) {
  el.replaceChildren(
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
    h("tbody", {}, rows.map((r) => h("tr", {}, columns.map((c) => h("td", {}, c.show ? c.show(r) : r[c.key]))))),
  );
}

function bars(el, rows, { label, value, show }) {
  const max = Math.max(1, ...rows.map(value));
  el.replaceChildren(...rows.map((r) => h("div", { class: "cbar" },
    h("div", { class: "cbar-label" }, label(r)),
    h("div", { class: "cbar-track" }, h("div", { class: "cbar-fill", style: `width:${(100 * value(r)) / max}%` })),
    h("div", { class: "cbar-value" }, show(r)))));
}

function heatColor(share) {
  const light = Math.round(96 - 56 * Math.min(1, share));
  return `background:hsl(221 83% ${light}%);color:${light < 60 ? "#fff" : "#111"}`;
}

function renderCohorts(body) {
  const cohorts = body.cohorts;
  const width = Math.max(0, ...cohorts.map((c) => c.periods.length));
  const head = h("tr", {}, h("th", { scope: "col" }, "Cohort"), h("th", { scope: "col" }, "Customers"),
    Array.from({ length: width }, (_, k) => h("th", { scope: "col" }, `M${k}`)));
  const rows = cohorts.map((c) => h("tr", { dataset: { cohort: c.cohort } },
    h("th", { scope: "row" }, c.cohort), h("td", {}, fmt.count(c.customers)),
    c.periods.map((p) => {
      const share = c.customers ? p.active_customers / c.customers : 0;
      return h("td", { class: "cell", style: heatColor(share),
        title: `${p.active_customers} active, ${p.orders} orders, ${fmt.money(p.revenue)}; cumulative per customer ${fmt.money(p.cumulative_revenue_per_customer)}` },
      `${Math.round(share * 100)}%`);
    })));
  $("cohort-table").replaceChildren(h("thead", {}, head), h("tbody", {}, rows));
  exports.cohorts = () => csv(
    ["cohort", "customers", "index", "active_customers", "orders", "revenue", "attributed_revenue", "cumulative_revenue_per_customer"],
    cohorts.flatMap((c) => c.periods.map((p) => ({ cohort: c.cohort, customers: c.customers, ...p }))));
}

function renderRfm(body) {
  $("rfm-sub").textContent = `${fmt.count(body.customers)} customers on ${body.as_of}; ${fmt.count(body.moved)} moved, ${fmt.count(body.new_customers)} new since ${body.compared_to}`;
  table($("rfm-table"), [
    { label: "Group", key: "group" },
    { label: "Customers", show: (r) => fmt.count(r.customers) },
    { label: "Orders", show: (r) => fmt.count(r.orders) },
    { label: "Revenue", show: (r) => fmt.money(r.revenue) },
  ], body.groups);
  table($("rfm-moves"), [
    { label: "From", show: (r) => r.from_group ?? "(new)" },
    { label: "To", key: "to_group" },
    { label: "Customers", show: (r) => fmt.count(r.customers) },
  ], body.movement.slice(0, 12));
  exports.rfm = () => csv(["group", "customers", "orders", "revenue"], body.groups);
}

function renderClv(body) {
  if (!body.model) {
    $("clv-sub").textContent = "No CLV model yet: the scheduler's clv job fits one after syncs.";
    $("clv-distribution").replaceChildren();
    $("clv-top").replaceChildren();
    $("clv-klaviyo").textContent = "";
    exports.clv = () => csv(["profile_id"], []);
    return;
  }
  const bt = body.model.backtest;
  $("clv-sub").textContent = `Next ${body.model.horizon_days} days: ${fmt.money(body.predicted_clv)} predicted from ${fmt.count(body.customers)} customers (historic ${fmt.money(body.historic_clv)}); model of ${body.model.as_of}` +
    (bt && bt.mae_orders !== undefined ? `; backtest MAE ${bt.mae_orders.toFixed(2)} orders vs naive ${bt.mae_orders_naive.toFixed(2)}` : "");
  bars($("clv-distribution"), body.distribution, {
    label: (r) => (r.to === null ? `${fmt.money(r.from)}+` : `${fmt.money(r.from)}–${fmt.money(r.to)}`),
    value: (r) => r.customers,
    show: (r) => fmt.count(r.customers),
  });
  // Klaviyo's own predictive analytics (synced with the profiles), beside ours; null is "—".
  const k = body.klaviyo;
  $("clv-klaviyo").textContent = k && k.customers
    ? `Klaviyo's own prediction for the ${fmt.count(k.customers)} of these customers it has one for: ${fmt.money(k.predicted_clv)} (ours for them: ${fmt.money(k.predicted_clv_ours)}); ${fmt.count(k.profiles)} synced profiles carry a Klaviyo prediction.`
    : "Klaviyo's own predictions: none synced for these customers.";
  const theirs = (value, show) => (value === null || value === undefined ? "—" : show(value));
  const rows = body.top.map((r) => ({
    ...r,
    klaviyo_predicted_clv: r.klaviyo ? r.klaviyo.predicted_clv : null,
    klaviyo_churn_probability: r.klaviyo ? r.klaviyo.churn_probability : null,
    klaviyo_predicted_orders: r.klaviyo ? r.klaviyo.predicted_orders : null,
  }));
  const columns = ["profile_id", "historic_clv", "predicted_clv", "predicted_clv_low", "predicted_clv_high", "predicted_orders", "churn_probability", "expected_next_order",
    "klaviyo_predicted_clv", "klaviyo_predicted_orders", "klaviyo_churn_probability"];
  table($("clv-top"), [
    { label: "Profile", key: "profile_id" },
    { label: "Predicted", show: (r) => fmt.money(r.predicted_clv) },
    { label: "90 % interval", show: (r) => `${fmt.money(r.predicted_clv_low)} – ${fmt.money(r.predicted_clv_high)}` },
    { label: "Klaviyo's", show: (r) => theirs(r.klaviyo_predicted_clv, fmt.money) },
    { label: "Historic", show: (r) => fmt.money(r.historic_clv) },
    { label: "Churn", show: (r) => fmt.rate(r.churn_probability) },
    { label: "Klaviyo churn", show: (r) => theirs(r.klaviyo_churn_probability, fmt.rate) },
  ], rows);
  exports.clv = () => csv(columns, rows);
}

function renderProducts(body) {
  table($("products-table"), [
    { label: "Product", show: (r) => r.product_name ?? r.product_id },
    { label: "Orders", show: (r) => fmt.count(r.orders) },
    { label: "Units", show: (r) => fmt.count(r.units) },
    { label: "Revenue", show: (r) => fmt.money(r.revenue) },
    { label: "Customers", show: (r) => fmt.count(r.customers) },
    { label: "Repeat rate", show: (r) => fmt.rate(r.repeat_purchase_rate) },
    { label: "Bought next", show: (r) => r.bought_next_name ?? r.bought_next ?? "—" },
  ], body.products);
  exports.products = () => csv(["product_id", "sku", "product_name", "orders", "units", "revenue", "customers", "repeat_customers", "repeat_purchase_rate", "bought_next", "bought_next_name"], body.products);
}

function renderFunnel(body) {
  bars($("funnel-bars"), body.steps, {
    label: (r) => r.step, value: (r) => r.profiles,
    show: (r) => `${fmt.count(r.profiles)}${r.conversion_rate === null ? "" : ` (${fmt.rate(r.conversion_rate)})`}`,
  });
  const rows = Object.entries(body.channels).map(([channel, steps]) => ({
    channel, viewed: steps[0].profiles, started: steps[1].profiles, placed: steps[2].profiles,
  }));
  table($("funnel-table"), [
    { label: "Channel of last touch", show: (r) => fmt.channelLabel(r.channel) },
    { label: "Viewed", show: (r) => fmt.count(r.viewed) },
    { label: "Checkout", show: (r) => fmt.count(r.started) },
    { label: "Ordered", show: (r) => fmt.count(r.placed) },
  ], rows);
  exports.funnel = () => csv(["channel", "viewed", "started", "placed"], rows);
}

function showError(error) {
  const banner = $("c-banner");
  if (error instanceof ApiError && error.status === 401) {
    $("c-keyform").hidden = false;
    banner.textContent = "Enter an API key to see this page.";
  } else {
    banner.textContent = error.message || String(error);
  }
  banner.hidden = false;
}

async function panel(name, path, params, render) {
  setState(name, "loading");
  try {
    render(await api(path, { params }));
    setState(name, "ready");
  } catch (error) {
    setState(name, "error");
    showError(error);
  }
}

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  const start = params.get("start");
  const end = params.get("end");
  return start && end && DATE.test(start) && DATE.test(end) ? { start, end } : null;
}

async function load(range) {
  $("c-banner").hidden = true;
  history.replaceState(null, "", `#start=${range.start}&end=${range.end}`);
  $("c-start").value = range.start;
  $("c-end").value = range.end;
  await Promise.all([
    panel("cohorts", "customers/cohorts", range, (b) => { $("tz-label").textContent = `Dates in ${b.timezone}`; renderCohorts(b); }),
    panel("rfm", "customers/rfm", { as_of: range.end }, renderRfm),
    panel("clv", "customers/clv", { top: 10 }, renderClv),
    panel("products", "products", range, renderProducts),
    panel("funnel", "funnel", range, renderFunnel),
  ]);
}

async function start() {
  let range = readHash();
  if (!range) {
    // The store's today comes from the server (its time zone), not from this browser.
    try {
      const rfm = await api("customers/rfm");
      const end = new Date(`${rfm.as_of}T00:00:00Z`);
      const first = new Date(end.getTime() - 364 * 86_400_000);
      range = { start: first.toISOString().slice(0, 10), end: rfm.as_of };
    } catch (error) {
      showError(error);
      return;
    }
  }
  await load(range);
}

$("customers-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const range = { start: $("c-start").value, end: $("c-end").value };
  if (DATE.test(range.start) && DATE.test(range.end)) load(range);
});
$("c-key").addEventListener("click", () => { $("c-keyform").hidden = false; });
$("c-keyform").addEventListener("submit", (event) => {
  event.preventDefault();
  setKey($("c-keyinput").value.trim());
  $("c-keyform").hidden = true;
  start();
});
document.addEventListener("click", (event) => {
  const name = event.target?.dataset?.csv;
  if (name && exports[name]) download(`${name}-${$("c-start").value}-${$("c-end").value}.csv`, exports[name]());
});

start();
