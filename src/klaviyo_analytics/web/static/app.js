// The dashboard: one date range drives every panel; every figure comes from this server's API.

import { api, ApiError, getKey, setKey } from "./api.js";
import { drawCampaignHours, drawDistribution, drawEngagement, drawHealth, drawRevenue, drawTop, plotlyReady } from "./charts.js";
import * as fmt from "./format.js";
import { SyncPanel } from "./sync.js";
import { download, renderBody, renderHead, renderMessage, rowsCsv, TABLES, toCsv, visibleColumns } from "./tables.js";

const { h } = fmt;
const $ = (id) => document.getElementById(id);
const PRESETS = ["today", "yesterday", "last-7-days", "last-30-days", "last-90-days", "this-month", "last-month", "this-year"];
const PAGE = 50;
const FORECAST_HORIZON_DAYS = 14;
const EMPTY_HINT = "No data yet — run a sync.";

const ATTRIBUTED = (ov) => ov.attributed?.revenue;

/** The attributed-revenue card's lines: share, splits, and the attribution rule named. */
function attributedNote(ov) {
  const a = ov.attributed;
  if (!a) return null;
  const days = (hours) => (hours % 24 === 0 ? `${hours / 24} day${hours === 24 ? "" : "s"}` : `${hours} h`);
  return h("div", { class: "kpi-note", "data-role": "split" },
    h("div", { "data-part": "share" }, `${a.share_pct === null ? "—" : fmt.percent(a.share_pct)} of revenue`),
    h("div", { "data-part": "source" }, `Campaigns ${fmt.money(a.campaigns)} · Flows ${fmt.money(a.flows)}`),
    h("div", { "data-part": "medium" }, `Email ${fmt.money(a.email)} · SMS ${fmt.money(a.sms)}`),
    h("div", { "data-part": "rule", title: "How an order is credited to a message" },
      `Klaviyo's attribution ${fmt.money(a.klaviyo)}; last touch ${fmt.money(a.last_touch)}` +
      ` (open or click within ${days(a.email_window_hours)}, SMS click within ${days(a.sms_window_hours)})`));
}

const KPIS = [
  { key: "revenue", label: "Revenue", fmt: fmt.money },
  { key: "attributed_revenue", label: "Attributed revenue", fmt: fmt.money, get: ATTRIBUTED, note: attributedNote,
    help: "Revenue of orders credited to a campaign or flow message" },
  { key: "net_revenue", label: "Net revenue", fmt: fmt.money, help: "Revenue less refunds" },
  { key: "refunds", label: "Refunds", fmt: fmt.money, inverse: true },
  { key: "orders", label: "Orders", fmt: fmt.count },
  { key: "aov", label: "Average order value", fmt: fmt.money },
  { key: "conversion_rate", label: "Conversion rate", fmt: fmt.rate, help: "Recipients who ordered after a message" },
  { key: "open_rate", label: "Open rate", fmt: fmt.rate, help: "Unique opens per delivered email" },
  { key: "click_rate", label: "Click rate", fmt: fmt.rate, help: "Unique clicks per delivered message" },
  { key: "subscribers", label: "New subscribers", fmt: fmt.count },
  { key: "form_submissions", label: "Form submissions", fmt: fmt.count },
];

const COMPARE_TEXT = { previous: "the previous period", year: "the same dates last year" };

const state = {
  range: { preset: "last-30-days" },
  compare: "previous",
  account: null,
  controller: null,
  generation: 0,
  table: { name: "campaigns", sort: "revenue", order: "desc", search: "", offset: 0, rows: [], total: 0 },
  top: { name: "flows", data: {} },
  health: { name: "bounce_rate", rows: [] },
  overviewBody: null,
  revenuePoints: null,
  placedOrder: undefined,
  keyPromptOpen: false,
  waitingForKey: [],
};

// ---- range ---------------------------------------------------------------------------------

function rangeParams() {
  return state.range.preset ? { range: state.range.preset } : { start: state.range.start, end: state.range.end };
}

const ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.compare = params.get("compare") === "year" ? "year" : "previous";
  const campaign = params.get("campaign");
  const flow = params.get("flow");
  state.detail = campaign && ID_RE.test(campaign) ? { kind: "campaign", id: campaign }
    : flow && ID_RE.test(flow) ? { kind: "flow", id: flow } : null;
  const preset = params.get("range");
  const start = params.get("start");
  const end = params.get("end");
  if (preset && PRESETS.includes(preset)) state.range = { preset };
  else if (start && end && /^\d{4}-\d{2}-\d{2}$/.test(start) && /^\d{4}-\d{2}-\d{2}$/.test(end)) state.range = { start, end };
}

function hashParams() {
  const params = new URLSearchParams(rangeParams());
  if (state.compare !== "previous") params.set("compare", state.compare);
  return params;
}

/** The shareable address of a campaign's or a flow's detail view (this range kept). */
function detailHref(kind, id) {
  const params = hashParams();
  params.set(kind, id);
  return `#${params.toString()}`;
}

function writeHash() {
  const params = hashParams();
  if (state.detail) params.set(state.detail.kind, state.detail.id);
  history.replaceState(null, "", `#${params.toString()}`);
}

function syncRangeControls() {
  const select = $("range-preset");
  select.value = state.range.preset || "custom";
  $("compare").value = state.compare;
  $("custom-range").hidden = Boolean(state.range.preset);
  if (!state.range.preset) {
    $("range-start").value = state.range.start;
    $("range-end").value = state.range.end;
  }
}

function setRange(range) {
  state.range = range;
  writeHash();
  syncRangeControls();
  loadAll();
}

// ---- panel states --------------------------------------------------------------------------

function chartBox(id) {
  const box = $(id);
  let plot = box.querySelector(".plot");
  if (!plot) {
    plot = h("div", { class: "plot", style: "width:100%;height:100%" });
    box.append(plot);
  }
  return { box, plot };
}

/** Say in words what a chart shows (screen readers; the chart is reachable with Tab). */
function describe(id, text) {
  const box = $(id);
  let desc = $(`${id}-desc`);
  if (!desc) {
    desc = h("p", { id: `${id}-desc`, class: "visually-hidden", "data-role": "chart-summary" });
    box.after(desc);
  }
  desc.textContent = text;
  box.setAttribute("aria-describedby", desc.id);
  box.tabIndex = 0;
}

function showChartState(id, kind, text, retry) {
  const { box } = chartBox(id);
  box.querySelector(".state-msg")?.remove();
  if (kind === "ready") return;
  const msg = h("div", { class: `state-msg ${kind}`, role: kind === "error" ? "alert" : "status" });
  if (kind === "loading") msg.append(h("div", { class: "spinner", "aria-hidden": "true" }), h("span", {}, text || "Loading…"));
  else msg.append(h("span", {}, text));
  if (retry) msg.append(h("button", { type: "button", class: "btn small", onclick: retry }, "Retry"));
  box.append(msg);
}

function setPanelState(panel, value) {
  const el = document.querySelector(`[data-panel="${panel}"]`);
  if (el) el.dataset.state = value;
}

function explain(error) {
  if (error instanceof ApiError && error.status === 0) return "The server did not answer.";
  return error.message || String(error);
}

/** Run one panel's loader with its loading, empty, error and retry states. */
async function runPanel(panel, loader, { chart = null, gen = state.generation } = {}) {
  setPanelState(panel, "loading");
  if (chart) showChartState(chart, "loading");
  try {
    const outcome = await loader();
    if (gen !== state.generation) return;
    setPanelState(panel, outcome === "empty" ? "empty" : "ready");
  } catch (error) {
    if (error.name === "AbortError" || gen !== state.generation) return;
    if (error instanceof ApiError && error.status === 401) {
      setPanelState(panel, "auth");
      if (chart) showChartState(chart, "empty", "Waiting for an API key…");
      askForKey(error.message);
      return;
    }
    setPanelState(panel, "error");
    const retry = () => runPanel(panel, loader, { chart, gen: state.generation });
    if (chart) showChartState(chart, "error", `Could not load: ${explain(error)}`, retry);
    else panelError(panel, error, retry);
    console.warn(`panel ${panel}:`, error.message);
  }
}

function panelError(panel, error, retry) {
  if (panel === "overview") {
    $("kpis").replaceChildren(h("div", { class: "banner error", role: "alert", style: "grid-column:1/-1" },
      h("span", {}, `Could not load the key figures: ${explain(error)}`),
      h("button", { type: "button", class: "btn small", onclick: retry }, "Retry")));
  } else if (panel === "detail") {
    $("detail-sub").textContent = `Could not load this view: ${explain(error)}`;
    $("detail-figures").replaceChildren(h("button", { type: "button", class: "btn small", onclick: retry }, "Retry"));
  } else if (panel === "table") {
    renderMessage($("perf-table").tBodies[0], visibleColumns(state.table.name, []), `Could not load the table: ${explain(error)}`, { error: true, retry });
  }
}

// ---- key prompt ----------------------------------------------------------------------------

function askForKey(reason) {
  const dialog = $("key-dialog");
  if (state.keyPromptOpen) return;
  state.keyPromptOpen = true;
  $("key-reason").textContent = reason === "change"
    ? "Enter the API key this page should use. It replaces the one stored in this browser."
    : getKey()
      ? `The saved API key was refused (${reason}). Enter another one.`
      : "This server needs an API key to show its data. Create one with “klaviyo-analytics apikey create --name dashboard --role admin” (a demo prints its key when it starts).";
  $("key-input").value = "";
  dialog.showModal();
  $("key-input").focus();
}

function initKeyDialog() {
  const dialog = $("key-dialog");
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    setKey(key);
    state.keyPromptOpen = false;
    dialog.close();
    hideBanner();
    loadAll();
    sync.load();
  });
  $("key-cancel").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    if (state.keyPromptOpen) {
      state.keyPromptOpen = false;
      showBanner("An API key is needed to show this server's data.", "Enter key", () => askForKey("no key"));
    }
  });
  $("change-key").addEventListener("click", () => askForKey("change"));
}

function showBanner(text, action, onAction, error = false) {
  const el = $("banner");
  el.className = error ? "banner error" : "banner";
  el.replaceChildren(h("span", {}, text));
  if (action) el.append(h("button", { type: "button", class: "btn small", onclick: onAction }, action));
  el.hidden = false;
}

function hideBanner() {
  $("banner").hidden = true;
}

// ---- header: account and freshness ---------------------------------------------------------

async function loadAccount(signal) {
  const el = $("freshness");
  try {
    const account = await api("account", { signal });
    state.account = account;
    fmt.setCurrency(account.currency);
    $("account-name").textContent = account.name || "Klaviyo Analytics";
    document.title = `${account.name || "Klaviyo"} · Analytics`;
    $("tz").textContent = account.timezone;
    sync.timezone = account.timezone;
    renderFreshness();
    return account;
  } catch (error) {
    if (error.name === "AbortError") throw error;
    el.dataset.state = "error";
    el.textContent = error.status === 401 ? "Waiting for an API key" : `Freshness unknown: ${explain(error)}`;
    throw error;
  }
}

function renderFreshness() {
  const a = state.account;
  const el = $("freshness");
  if (!a) return;
  if (!a.last_sync_at) {
    el.dataset.state = "never";
    el.textContent = a.source === "klaviyo" ? "Not synced yet — figures straight from Klaviyo" : "Never synced";
    return;
  }
  const ageMin = (Date.now() - new Date(a.last_sync_at).getTime()) / 60000;
  const stale = ageMin > a.stale_after_minutes;
  el.dataset.state = stale ? "stale" : "fresh";
  el.textContent = `${stale ? "Stale: synced" : "Synced"} ${fmt.ago(a.last_sync_at)}`;
  el.title = `Last successful sync ${new Date(a.last_sync_at).toLocaleString()}; stale after ${a.stale_after_minutes} min`;
}

// ---- KPIs ----------------------------------------------------------------------------------

function kpiSkeleton() {
  $("kpis").replaceChildren(...KPIS.map((k) => h("div", { class: "kpi", "data-kpi": k.key, "aria-busy": "true" },
    h("div", { class: "label" }, k.label),
    h("div", { class: "value skeleton" }, "…"),
    h("div", { class: "compare skeleton" }, "…"))));
}

async function loadOverview(signal, account) {
  const ov = await api("overview", { params: { ...rangeParams(), compare: state.compare }, signal });
  state.resolveOverview?.(ov);
  $("range-label").textContent = `${fmt.rangeText(ov.range)} · compared with ${COMPARE_TEXT[ov.compare] || "the previous period"}, ${fmt.rangeText(ov.previous_range)}` +
    (ov.source === "klaviyo" ? " · figures from Klaviyo while the first sync runs" : "");
  const warning = $("compare-warning");
  warning.hidden = !ov.comparison_before_data;
  warning.textContent = ov.comparison_before_data
    ? `The comparison period starts before the first synced order (${fmt.day(ov.data_since)}): its figures are incomplete, so the changes shown are not like for like.`
    : "";
  $("kpis").replaceChildren(...KPIS.map((k) => {
    const c = (k.get ? k.get(ov) : ov[k.key]) || { current: null, previous: null, change_pct: null };
    const ch = fmt.change(c.change_pct);
    // For refunds a rise is bad news: coloured as such.
    const tone = k.inverse ? { up: "down", down: "up" }[ch.direction] || ch.direction : ch.direction;
    const note = k.key === "subscribers" && ov.subscribers_source === "profiles"
      ? h("div", { class: "kpi-note", "data-role": "source" }, "New profiles: no subscription events synced")
      : k.key === "subscribers" && ov.subscribers_metric
        ? h("div", { class: "kpi-note", "data-role": "source" }, `“${ov.subscribers_metric}” events`)
        : null;
    return h("div", { class: "kpi", "data-kpi": k.key, "data-value": c.current, title: k.help || null },
      h("div", { class: "label" }, h("span", {}, k.label)),
      h("div", { class: "value", "data-role": "value" }, k.fmt(c.current)),
      h("div", { class: "compare" },
        h("span", { class: `pill ${tone}`, "data-role": "change", "aria-label": ch.label }, ch.text),
        h("span", { "data-role": "previous" }, `vs ${k.fmt(c.previous)}`)),
      k.note ? k.note(ov) : note);
  }));
  // What bench/bench_page.py measures: navigation start to the first frame with the KPIs.
  requestAnimationFrame(() => {
    if (!performance.getEntriesByName("kpis-visible").length) performance.mark("kpis-visible");
  });
  const nothing = !ov.data_through && KPIS.filter((k) => !k.get).every((k) => Number(ov[k.key].current) === 0 && Number(ov[k.key].previous) === 0);
  account.then(() => {
    if (nothing && state.account && !state.account.last_sync_at) {
      showBanner(EMPTY_HINT, "Go to sync", () => $("sync").scrollIntoView({ behavior: "smooth" }));
    }
  });
  return nothing ? "empty" : "ready";
}

// ---- charts --------------------------------------------------------------------------------

function isEmptyRevenue(points) {
  return !points.some((p) => Number(p.revenue) !== 0);
}

async function placedOrderMetric(signal) {
  if (state.placedOrder !== undefined) return state.placedOrder;
  const body = await api("metrics", { signal });
  const found = body.metrics.find((m) => m.name === "Placed Order");
  state.placedOrder = found ? found.id : null;
  return state.placedOrder;
}

async function forecastExtras(signal) {
  const note = $("forecast-note");
  const metric = await placedOrderMetric(signal);
  if (!metric) {
    note.textContent = "Forecast and anomalies need the Placed Order metric, which has not been synced.";
    note.hidden = false;
    return null;
  }
  const [forecast, anomalies] = await Promise.allSettled([
    api(`analytics/forecast/${metric}`, { params: { measure: "sum", horizon: FORECAST_HORIZON_DAYS }, signal }),
    api(`analytics/anomalies/${metric}`, { params: { ...rangeParams(), measure: "sum" }, signal }),
  ]);
  for (const r of [forecast, anomalies]) {
    if (r.status === "rejected" && (r.reason.name === "AbortError" || r.reason.status === 401)) throw r.reason;
  }
  const notes = [];
  const extras = {};
  if (forecast.status === "fulfilled") {
    extras.forecast = forecast.value.points;
    extras.level = forecast.value.level;
    notes.push(forecastWords(forecast.value));
  } else {
    notes.push(forecast.reason.code === "series_too_short"
      ? "No forecast yet: it needs at least four weeks of order history."
      : `No forecast: ${forecast.reason.message}`);
  }
  if (anomalies.status === "fulfilled") {
    extras.anomalies = anomalies.value.anomalies;
    const n = anomalies.value.anomalies.length;
    notes.push(n ? `${n} unusual day${n > 1 ? "s" : ""} circled in red.` : "No unusual days in this range.");
  } else {
    notes.push(anomalies.reason.code === "series_too_short"
      ? "Unusual days are looked for in ranges of two weeks or more."
      : `No anomaly check: ${anomalies.reason.message}`);
  }
  note.textContent = notes.join(" ");
  note.hidden = false;
  return extras;
}

// The backtest's folds are 14 days long (analytics/forecast.py FOLD_DAYS).
const BACKTEST_FOLD_DAYS = 14;

/** The forecast's note in a marketer's words: what it predicts, how far off it typically was
 * on the last weeks it was tested on, and how often its band held the real figure. */
export function forecastWords(f) {
  const level = Math.round(f.level * 100);
  const best = f.backtest.find((s) => s.model_name === f.model_name);
  let text = `Forecast of the next ${FORECAST_HORIZON_DAYS} days.`;
  if (best) {
    const weeks = Math.round((best.folds * BACKTEST_FOLD_DAYS) / 7);
    text += ` Tested on the last ${weeks} weeks it missed by ±${fmt.money(best.mae)} a day on average,` +
      ` and the shaded ${level}% band held the actual revenue on ${fmt.percent(best.coverage * 100)} of those days.`;
  } else {
    text += ` The shaded band is its ${level}% interval.`;
  }
  return text;
}

async function loadRevenue(signal, account) {
  const yoy = state.compare === "year";
  const body = await api("charts/revenue", { params: { ...rangeParams(), ...(yoy ? { compare: "year" } : {}) }, signal });
  await account;
  state.revenuePoints = body.points;
  state.revenueBody = body;
  const { plot } = chartBox("revenue-chart");
  const withForecast = $("forecast-toggle").checked;
  $("forecast-note").hidden = true;
  if (isEmptyRevenue(body.points) && !withForecast) {
    showChartState("revenue-chart", "empty", state.account?.last_sync_at ? "No revenue in this range." : EMPTY_HINT);
    return "empty";
  }
  let extras = null;
  if (withForecast && body.bucket && body.bucket !== "day") {
    // The forecast is daily: beside hourly or weekly bars its scale would mislead.
    const note = $("forecast-note");
    note.textContent = `The forecast is daily: choose a range of 3 to 92 days to see it (this range is drawn by ${body.bucket}).`;
    note.hidden = false;
  } else if (withForecast) {
    showChartState("revenue-chart", "loading", "Fitting the forecast…");
    extras = await forecastExtras(signal);
  }
  await chartsReady();
  $("revenue-title").textContent = `Revenue per ${body.bucket || "day"} by channel`;
  const totals = new Map();
  for (const p of body.points) {
    const key = p.hour === null || p.hour === undefined ? p.date : `${p.date} ${String(p.hour).padStart(2, "0")}:00`;
    totals.set(key, (totals.get(key) || 0) + Number(p.revenue));
  }
  const [bestKey, bestValue] = [...totals.entries()].reduce((a, b) => (b[1] > a[1] ? b : a), ["", -Infinity]);
  const whole = [...totals.values()].reduce((a, b) => a + b, 0);
  describe("revenue-chart", `Revenue per ${body.bucket || "day"} by channel, ${fmt.rangeText(body.range)}: ${fmt.money(whole)} in all;` +
    ` highest ${body.bucket || "day"} ${bestKey} with ${fmt.money(bestValue)}.`);
  if (yoy && body.previous) extras = { ...(extras || {}), lastYear: body.previous };
  await drawRevenue(plot, body.points, extras, body.bucket || "day");
  plot.dataset.bucket = body.bucket || "day";
  showChartState("revenue-chart", "ready");
  return "ready";
}

async function loadDistribution(signal, account) {
  const body = await api("charts/distribution", { params: rangeParams(), signal });
  await account;
  if (!body.points.some((p) => Number(p.revenue) > 0)) {
    showChartState("distribution-chart", "empty", state.account?.last_sync_at ? "No revenue in this range." : EMPTY_HINT);
    return "empty";
  }
  await chartsReady();
  await drawDistribution(chartBox("distribution-chart").plot, body.points);
  describe("distribution-chart", `Revenue by channel: ${body.points.filter((p) => Number(p.revenue) > 0)
    .map((p) => `${fmt.channelLabel(p.channel)} ${fmt.money(p.revenue)} (${fmt.percent(p.share_pct)})`).join("; ")}.`);
  showChartState("distribution-chart", "ready");
  return "ready";
}

async function loadEngagement(signal, account) {
  const yoy = state.compare === "year";
  const body = await api("charts/engagement", { params: { ...rangeParams(), ...(yoy ? { compare: "year" } : {}) }, signal });
  await account;
  if (!body.points.some((p) => Number(p.delivered) > 0)) {
    showChartState("engagement-chart", "empty", state.account?.last_sync_at ? "No messages delivered in this range." : EMPTY_HINT);
    return "empty";
  }
  await chartsReady();
  const lastYear = yoy && body.previous ? { points: body.previous, range: body.range, previousRange: body.previous_range } : null;
  await drawEngagement(chartBox("engagement-chart").plot, body.points, lastYear);
  showChartState("engagement-chart", "ready");
  return "ready";
}

const TOP = {
  flows: { path: "charts/top-flows", sub: "Flows by revenue in the range", value: "revenue", format: fmt.money, color: "#4338ca", label: "Revenue" },
  segments: { path: "charts/top-segments", sub: "Largest segments (profiles now)", value: "profile_count", format: fmt.count, color: "#0ea5e9", label: "Profiles" },
  forms: { path: "charts/top-forms", sub: "Forms by submissions in the range", value: "submissions", format: fmt.count, color: "#10b981", label: "Submissions" },
};

async function loadTop(signal, account) {
  const names = Object.keys(TOP);
  const bodies = await Promise.all(names.map((n) => api(TOP[n].path, { params: { ...rangeParams(), limit: 6 }, signal })));
  await account;
  names.forEach((n, i) => { state.top.data[n] = bodies[i].points; });
  return drawTopSelected();
}

async function drawTopSelected() {
  const name = state.top.name;
  const spec = TOP[name];
  const rows = state.top.data[name] || [];
  $("top-sub").textContent = spec.sub;
  const useful = rows.filter((r) => Number(r[spec.value] ?? 0) > 0);
  if (!useful.length) {
    showChartState("top-chart", "empty", state.account?.last_sync_at ? `No ${name} with figures in this range.` : EMPTY_HINT);
    return "empty";
  }
  await chartsReady();
  await drawTop(chartBox("top-chart").plot, useful, spec);
  describe("top-chart", `${spec.sub}: ${useful.map((r) => `${r.name} ${spec.format(r[spec.value] ?? 0)}`).join("; ")}.`);
  showChartState("top-chart", "ready");
  return "ready";
}

function initTabs(container, attr, onSelect) {
  const tabs = [...container.querySelectorAll('[role="tab"]')];
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
    }
    if (focus) tab.focus();
    onSelect(tab.dataset[attr], tab);
  };
  tabs.forEach((tab, i) => {
    tab.addEventListener("click", () => select(tab, false));
    tab.addEventListener("keydown", (event) => {
      const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
      if (step) {
        event.preventDefault();
        select(tabs[(i + step + tabs.length) % tabs.length], true);
      }
    });
  });
}

// ---- campaign and flow detail ---------------------------------------------------------------

function figureTiles(items) {
  return items.map(([key, label, text]) => h("div", { class: "health-tile", "data-figure": key },
    h("div", { class: "label" }, label), h("div", { class: "value", "data-role": "value" }, text)));
}

async function loadDetail(signal) {
  const box = $("detail");
  const d = state.detail;
  box.hidden = !d;
  if (!d) return "ready";
  $("detail-close").setAttribute("href", `#${hashParams().toString()}`);
  const table = $("detail-table");
  if (d.kind === "campaign") {
    const body = await api(`campaigns/${d.id}`, { signal });
    const c = body.campaign;
    state.detailCsv = { name: `campaign_${d.id}_hours.csv`, columns: ["hour", "received", "opens", "clicks", "orders", "revenue"], rows: body.hours };
    $("detail-title").textContent = c.name;
    $("detail-sub").textContent = `${c.channel === "sms" ? "SMS" : "Email"} campaign · sent ${fmt.dateTime(body.send_time, body.timezone)} · figures ${fmt.rangeText(body.range)}`;
    $("detail-figures").replaceChildren(...figureTiles([
      ["recipients", "Recipients", fmt.count(c.recipients)],
      ["unique_opens", "Opens", c.open_rate === null ? "—" : `${fmt.count(c.unique_opens)} (${fmt.rate(c.open_rate)})`],
      ["unique_clicks", "Clicks", `${fmt.count(c.unique_clicks)} (${fmt.rate(c.click_rate)})`],
      ["conversions", "Orders", fmt.count(c.conversions)],
      ["revenue", "Revenue", fmt.money(c.revenue)],
      ["revenue_per_recipient", "Revenue per recipient", fmt.money(c.revenue_per_recipient)],
      ["bounce_rate", "Bounce rate", fmt.smallRate(c.bounce_rate)],
      ["unsubscribe_rate", "Unsubscribe rate", fmt.smallRate(c.unsubscribe_rate)],
    ]));
    table.hidden = true;
    $("detail-chart").hidden = !body.hours.length;
    if (body.hours.length) {
      await chartsReady();
      await drawCampaignHours(chartBox("detail-chart").plot, body.hours);
    }
  } else {
    const [body, flows] = await Promise.all([
      api(`flows/${d.id}/messages`, { params: { ...rangeParams(), sort: "position", order: "asc", limit: 1000 }, signal }),
      api("flows", { params: { ...rangeParams(), limit: 1000 }, signal }),
    ]);
    const flow = flows.rows.find((f) => f.id === d.id);
    state.detailCsv = { name: `flow_${d.id}_messages_${rangeSlug()}.csv`, columns: Object.keys(body.rows[0] || { id: null }), rows: body.rows };
    $("detail-title").textContent = flow ? flow.name : "Flow";
    $("detail-sub").textContent = `Flow · each message in flow order · ${fmt.rangeText(body.range)}`;
    $("detail-figures").replaceChildren(...(flow ? figureTiles([
      ["recipients", "Recipients", fmt.count(flow.recipients)],
      ["conversions", "Orders", fmt.count(flow.conversions)],
      ["revenue", "Revenue", fmt.money(flow.revenue)],
      ["revenue_per_recipient", "Revenue per recipient", fmt.money(flow.revenue_per_recipient)],
    ]) : []));
    $("detail-chart").hidden = true;
    table.hidden = false;
    const cols = [["position", "#", String], ["name", "Message", (v) => v || "—"], ["channel", "Channel", (v) => v || "—"],
      ["recipients", "Recipients", fmt.count], ["open_rate", "Open rate", fmt.rate], ["click_rate", "Click rate", fmt.rate],
      ["conversions", "Orders", fmt.count], ["revenue", "Revenue", fmt.money], ["revenue_per_recipient", "Per recipient", fmt.money]];
    table.tHead.replaceChildren(h("tr", {}, ...cols.map(([, label]) => h("th", { scope: "col" }, label))));
    table.tBodies[0].replaceChildren(...body.rows.map((r) => h("tr", { "data-id": r.id },
      ...cols.map(([key, , f]) => h("td", { "data-col": key, class: key === "name" ? "name" : key === "channel" ? null : "num" },
        r[key] === null || r[key] === undefined ? "—" : f(r[key]))))));
  }
  box.scrollIntoView({ block: "start" });
  return "ready";
}

// ---- deliverability and list health -------------------------------------------------------

async function loadHealth(signal, account, overviewBody) {
  // After the key figures: this panel's query must not compete with the KPIs' first paint.
  const ov = await overviewBody;
  const body = await api("campaigns", { params: { ...rangeParams(), sort: "send_time", order: "desc", limit: 20 }, signal });
  await account;
  if (!ov) throw new Error("the key figures did not load");
  const d = ov.deliverability;
  const tiles = $("health-tiles");
  if (!d) {
    tiles.replaceChildren(h("p", { class: "sub" }, "List health is not available for figures answered by Klaviyo."));
  } else {
    tiles.replaceChildren(...Object.entries(fmt.HEALTH).map(([key, t]) => {
      const c = d[key];
      const status = fmt.healthStatus(key, c.current);
      return h("div", { class: "health-tile", "data-health": key },
        h("div", { class: "label" }, t.label),
        h("div", { class: "value", "data-role": "value" }, fmt.smallRate(c.current)),
        h("div", { class: `status ${status ? status.toLowerCase().replaceAll(" ", "-") : ""}`, "data-role": "status" },
          status || "No published threshold"),
        h("div", { class: "threshold", "data-role": "threshold" },
          t.healthy === null ? "Klaviyo publishes no healthy level" : `Healthy below ${fmt.smallRate(t.healthy)}`));
    }));
  }
  state.health.rows = body.rows.filter((r) => r.channel === "email");
  state.health.range = body.range;
  return drawHealthSelected();
}

async function drawHealthSelected() {
  const key = state.health.name;
  const rows = state.health.rows.filter((r) => r[key] !== null && r[key] !== undefined);
  if (!rows.length) {
    showChartState("health-chart", "empty", state.account?.last_sync_at ? "No email campaign in this range." : EMPTY_HINT);
    return "empty";
  }
  await chartsReady();
  await drawHealth(chartBox("health-chart").plot, rows, key);
  describe("health-chart", `${fmt.HEALTH[key].label} per email campaign: ${rows.map((r) =>
    `${r.name} ${fmt.smallRate(r[key])}${fmt.healthStatus(key, r[key]) ? ` (${fmt.healthStatus(key, r[key])})` : ""}`).join("; ")}.`);
  showChartState("health-chart", "ready");
  return "ready";
}

// ---- tables --------------------------------------------------------------------------------

function tableParams(extra = {}) {
  const t = state.table;
  return { ...rangeParams(), sort: t.sort, order: t.order, search: t.search || undefined, limit: PAGE, offset: t.offset, ...extra };
}

async function loadTable(signal, account) {
  const t = state.table;
  const spec = TABLES[t.name];
  const table = $("perf-table");
  const body = await api(t.name, { params: tableParams(), signal });
  await account;
  t.rows = body.rows;
  t.total = body.total;
  const columns = visibleColumns(t.name, body.rows);
  renderHead(table.tHead, t.name, columns, t.sort, t.order, sortBy);
  if (!body.rows.length) {
    const text = t.search ? `Nothing matches “${t.search}”.` : state.account?.last_sync_at ? spec.empty : EMPTY_HINT;
    renderMessage(table.tBodies[0], columns, text);
  } else {
    const kind = { campaigns: "campaign", flows: "flow" }[t.name];
    renderBody(table.tBodies[0], columns, body.rows, state.account?.timezone, kind ? (r) => detailHref(kind, r.id) : null);
  }
  const noun = body.total === 1 ? spec.title.toLowerCase().replace(/s$/, "") : spec.title.toLowerCase();
  const when = spec.ranged === false && !columns.some((c) => c.optional) ? "sizes now" : fmt.rangeText(body.range);
  $("table-sub").textContent = `${fmt.count(body.total)} ${noun} · ${when} · sorted by ${columns.find((c) => c.key === t.sort)?.label.toLowerCase() || t.sort}, ${t.order === "asc" ? "ascending" : "descending"}`;
  renderPager();
  requestAnimationFrame(updateScrollCue);
  return body.rows.length ? "ready" : "empty";
}

/** Name the table's columns that are off-screen to the right (phones), or hide the cue. */
function updateScrollCue() {
  const wrap = $("table-panel");
  const cue = $("table-scroll-cue");
  const right = wrap.scrollLeft + wrap.clientWidth;
  const hidden = [...wrap.querySelectorAll("thead th")]
    .filter((th) => th.offsetLeft + th.offsetWidth / 2 > right)
    .map((th) => th.textContent.trim());
  cue.hidden = hidden.length === 0;
  cue.textContent = hidden.length ? `Scroll sideways for ${hidden.join(", ")}` : "";
}

function renderPager() {
  const t = state.table;
  const pager = $("pager");
  if (t.total <= PAGE) {
    pager.replaceChildren();
    return;
  }
  const first = t.offset + 1;
  const last = Math.min(t.total, t.offset + PAGE);
  pager.replaceChildren(
    h("span", {}, `${fmt.count(first)}–${fmt.count(last)} of ${fmt.count(t.total)}`),
    h("button", { type: "button", class: "btn small", disabled: t.offset === 0, onclick: () => page(-1) }, "‹ Previous"),
    h("button", { type: "button", class: "btn small", disabled: last >= t.total, onclick: () => page(1) }, "Next ›"),
  );
}

function page(step) {
  state.table.offset = Math.max(0, state.table.offset + step * PAGE);
  reloadTable();
}

function reloadTable() {
  const signal = state.controller?.signal;
  runPanel("table", () => loadTable(signal));
}

function sortBy(key) {
  const t = state.table;
  if (t.sort === key) t.order = t.order === "desc" ? "asc" : "desc";
  else {
    t.sort = key;
    t.order = key === "name" || key === "channel" || key === "status" ? "asc" : "desc";
  }
  t.offset = 0;
  reloadTable();
}

function rangeSlug() {
  return state.range.preset || `${state.range.start}_${state.range.end}`;
}

function initChartExports() {
  $("revenue-export").addEventListener("click", () => {
    const body = state.revenueBody;
    if (!body) return;
    download(`revenue_by_${body.bucket || "day"}_${rangeSlug()}.csv`, rowsCsv(["date", "hour", "channel", "revenue", "orders"], body.points));
  });
  $("health-export").addEventListener("click", () => {
    download(`list_health_${rangeSlug()}.csv`, rowsCsv(
      ["id", "name", "send_time", "recipients", "bounces", "bounce_rate", "spam_complaints", "spam_rate", "unsubscribes",
        "unsubscribe_rate", "unique_opens", "unique_clicks", "click_to_open_rate"], state.health.rows));
  });
  $("detail-export").addEventListener("click", () => {
    const c = state.detailCsv;
    if (c) download(c.name, rowsCsv(c.columns, c.rows));
  });
}

async function exportCsv() {
  const t = state.table;
  const button = $("table-export");
  button.disabled = true;
  try {
    const rows = [];
    for (let offset = 0; offset < 100_000; offset += 1000) {
      const body = await api(t.name, { params: tableParams({ limit: 1000, offset }) });
      rows.push(...body.rows);
      if (rows.length >= body.total || !body.rows.length) break;
    }
    const r = state.range.preset || `${state.range.start}_${state.range.end}`;
    download(`${t.name}_${r}.csv`, toCsv(t.name, rows));
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) askForKey(error.message);
    else showBanner(`The export failed: ${explain(error)}`, "Dismiss", hideBanner, true);
  } finally {
    button.disabled = false;
  }
}

function initTables() {
  initTabs(document.querySelector("#tables .tabs"), "table", (name, tab) => {
    state.table = { ...state.table, name, sort: TABLES[name].defaultSort, order: "desc", offset: 0, search: "" };
    $("table-search").value = "";
    $("table-panel").setAttribute("aria-labelledby", tab.id);
    reloadTable();
  });
  let timer = null;
  $("table-search").addEventListener("input", (event) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.table.search = event.target.value.trim();
      state.table.offset = 0;
      reloadTable();
    }, 250);
  });
  $("table-export").addEventListener("click", exportCsv);
  $("table-panel").addEventListener("scroll", () => requestAnimationFrame(updateScrollCue), { passive: true });
  window.addEventListener("resize", () => requestAnimationFrame(updateScrollCue));
}

// ---- orchestration -------------------------------------------------------------------------

async function loadAll() {
  state.controller?.abort();
  const controller = new AbortController();
  state.controller = controller;
  const gen = ++state.generation;
  const { signal } = controller;
  document.body.dataset.loading = "true";
  const refresh = $("refresh");
  refresh.classList.add("busy");
  kpiSkeleton();
  // Every panel fetches at once; empty-state wording (never synced, or nothing in this range)
  // waits for the account, and charts wait for the KPIs to be painted (see chartsReady).
  const account = runPanel("account", () => loadAccount(signal), { gen });
  const overviewBody = new Promise((resolve) => { state.resolveOverview = resolve; });
  const overview = runPanel("overview", () => loadOverview(signal, account), { gen });
  overview.finally(afterPaint);
  overview.finally(() => state.resolveOverview(null));
  const panels = [
    overview,
    runPanel("revenue", () => loadRevenue(signal, account), { chart: "revenue-chart", gen }),
    runPanel("distribution", () => loadDistribution(signal, account), { chart: "distribution-chart", gen }),
    runPanel("engagement", () => loadEngagement(signal, account), { chart: "engagement-chart", gen }),
    runPanel("top", () => loadTop(signal, account), { chart: "top-chart", gen }),
    runPanel("table", () => loadTable(signal, account), { gen }),
    runPanel("health", () => loadHealth(signal, account, overviewBody), { chart: "health-chart", gen }),
    runPanel("detail", () => loadDetail(signal), { gen }),
  ];
  await Promise.allSettled([account, ...panels]);
  if (gen === state.generation) {
    refresh.classList.remove("busy");
    document.body.dataset.loading = "false";
  }
}

let sync;

// The chart library is big (plotly.min.js): it is loaded only once the KPIs are on screen, so
// that parsing it never delays the figures people look at first.
let kpisPainted;
const kpisShown = new Promise((resolve) => { kpisPainted = resolve; });
function afterPaint() {
  requestAnimationFrame(() => setTimeout(() => {
    kpisPainted();
    plotlyReady().catch((error) => showBanner(`Charts are unavailable: ${error.message}`, null, null, true));
  }, 0));
}

async function chartsReady() {
  await kpisShown;
  await plotlyReady();
}

function init() {
  readHash();
  syncRangeControls();
  initKeyDialog();
  $("range-preset").addEventListener("change", (event) => {
    const value = event.target.value;
    if (value === "custom") {
      $("custom-range").hidden = false;
      const end = state.range.end || new Date().toISOString().slice(0, 10);
      $("range-end").value = $("range-end").value || end;
      $("range-start").value = $("range-start").value || new Date(Date.parse(end) - 29 * 86400000).toISOString().slice(0, 10);
      $("range-start").focus();
      return;
    }
    setRange({ preset: value });
  });
  $("range-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const start = $("range-start").value;
    const end = $("range-end").value;
    if (!start || !end) return;
    if (start > end) {
      showBanner("The start of the range must not be after its end.", "Dismiss", hideBanner, true);
      return;
    }
    hideBanner();
    setRange({ start, end });
  });
  $("refresh").addEventListener("click", () => { loadAll(); sync.load(); });
  $("compare").addEventListener("change", (event) => {
    state.compare = event.target.value === "year" ? "year" : "previous";
    writeHash();
    const signal = state.controller?.signal;
    runPanel("overview", () => loadOverview(signal, Promise.resolve(state.account)));
    runPanel("revenue", () => loadRevenue(signal, Promise.resolve(state.account)), { chart: "revenue-chart" });
    runPanel("engagement", () => loadEngagement(signal, Promise.resolve(state.account)), { chart: "engagement-chart" });
  });
  $("forecast-toggle").addEventListener("change", () => {
    runPanel("revenue", () => loadRevenue(state.controller?.signal), { chart: "revenue-chart" });
  });
  initTabs(document.querySelector('[data-panel="top"] .tabs'), "top", (name, tab) => {
    state.top.name = name;
    $("top-chart").setAttribute("aria-labelledby", tab.id);
    runPanel("top", drawTopSelected, { chart: "top-chart" });
  });
  initTabs(document.querySelector('#health .tabs'), "health", (name, tab) => {
    state.health.name = name;
    $("health-chart").setAttribute("aria-labelledby", tab.id);
    runPanel("health", drawHealthSelected, { chart: "health-chart" });
  });
  initTables();
  initChartExports();
  sync = new SyncPanel({
    timezone: null,
    onFinished: () => loadAll(),
    onError: (error) => { if (error.status === 401) askForKey(error.message); },
  });
  window.addEventListener("hashchange", () => { readHash(); syncRangeControls(); loadAll(); });
  loadAll();
  sync.load();
  setInterval(renderFreshness, 30_000);
}

init();
