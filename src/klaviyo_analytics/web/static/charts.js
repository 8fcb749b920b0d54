// Charts drawn with the plotly.js bundle of the installed `plotly` Python package (/vendor).

import { CHANNELS, HEALTH, channelColor, channelLabel, count, healthStatus, money, moneyTick, niceTicks, smallRate } from "./format.js";

let loading = null;

/** Load plotly.min.js once (from this server); resolve to window.Plotly. */
export function plotlyReady() {
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/vendor/plotly.min.js";
      script.async = true;
      script.onload = () => (window.Plotly ? resolve(window.Plotly) : reject(new Error("the chart library did not load")));
      script.onerror = () => {
        loading = null;
        reject(new Error("the chart library could not be loaded from this server"));
      };
      document.head.append(script);
    });
  }
  return loading;
}

const FONT = { family: getComputedStyle(document.documentElement).fontFamily, size: 12, color: "#374151" };
const CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };

const narrow = () => window.innerWidth < 600;

function layout(extra = {}) {
  return {
    font: FONT,
    margin: { l: 58, r: 12, t: 6, b: 36 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    hoverlabel: { font: { ...FONT, color: "#111827" }, bgcolor: "#ffffff", bordercolor: "#d1d5db" },
    legend: {
      orientation: "h", x: 0, y: -0.14, yanchor: "top", font: { size: 12 },
      ...(narrow() ? { entrywidth: 0.5, entrywidthmode: "fraction" } : {}),
    },
    xaxis: { showgrid: false, linecolor: "#d1d5db", tickfont: { color: "#5b6472" }, fixedrange: true },
    yaxis: { gridcolor: "#eceff3", zeroline: false, tickfont: { color: "#5b6472" }, fixedrange: true },
    ...extra,
  };
}

async function draw(el, traces, lay) {
  const Plotly = await plotlyReady();
  await Plotly.react(el, traces, lay, CONFIG);
}

const CHANNEL_ORDER = Object.keys(CHANNELS);

/** A point's x: its local date, or "YYYY-MM-DD HH:00" for an hourly bucket (store time). */
export function bucketX(p) {
  return p.hour === null || p.hour === undefined ? p.date : `${p.date} ${String(p.hour).padStart(2, "0")}:00`;
}

/** Sum revenue per channel and bucket; return the channels in a stable order and the buckets. */
export function revenueSeries(points) {
  const dates = [...new Set(points.map(bucketX))].sort();
  const byChannel = new Map();
  for (const p of points) {
    if (!byChannel.has(p.channel)) byChannel.set(p.channel, new Map());
    byChannel.get(p.channel).set(bucketX(p), Number(p.revenue));
  }
  const channels = [...byChannel.keys()].sort(
    (a, b) => (CHANNEL_ORDER.indexOf(a) + 99) % 99 - (CHANNEL_ORDER.indexOf(b) + 99) % 99,
  );
  return { dates, channels, byChannel };
}

/** Money axis ticks (one money format: the page's, exact to the step) up to `max`. */
export function moneyAxis(max) {
  const { step, values } = niceTicks(max);
  return { tickmode: "array", tickvals: values, ticktext: values.map((v) => moneyTick(v, step)), range: [0, values[values.length - 1]] };
}

const X_FORMATS = {
  hour: { tickformat: "%H:%M", hover: "%b %d, %H:%M" },
  day: { tickformat: "%b %d", hover: "%b %d, %Y" },
  week: { tickformat: "%b %d", hover: "week of %b %d, %Y" },
  month: { tickformat: "%b %Y", hover: "%B %Y" },
};

/** The x axis of a bucketed chart: one tick per bucket when there are few, never repeated. */
export function bucketAxis(bucket, count) {
  const f = X_FORMATS[bucket] || X_FORMATS.day;
  const axis = { type: "date", tickformat: f.tickformat, hoverformat: f.hover };
  if (bucket === "hour") axis.dtick = count > 24 ? 6 * 3600_000 : 3 * 3600_000;
  else if (bucket === "day" && count <= 14) axis.dtick = 86400_000;
  else if (bucket === "month") axis.dtick = "M1";
  if (bucket === "hour" && count > 24) axis.tickformat = "%b %d %H:%M";
  return axis;
}

export async function drawRevenue(el, points, extras, bucket = "day") {
  const { dates, channels, byChannel } = revenueSeries(points);
  const traces = channels
    .filter((c) => [...byChannel.get(c).values()].some((v) => v !== 0))
    .map((c) => {
      const y = dates.map((d) => byChannel.get(c).get(d) || 0);
      return {
        type: "bar",
        name: channelLabel(c),
        x: dates,
        y,
        marker: { color: channelColor(c) },
        customdata: y.map((v) => money(v)),
        hovertemplate: `%{customdata}<extra>${channelLabel(c)}</extra>`,
      };
    });
  const stacked = dates.map((d) => channels.reduce((s, c) => s + Math.max(0, byChannel.get(c).get(d) || 0), 0));
  let top = Math.max(0, ...stacked);
  if (extras?.lastYear) {
    // The same dates a year earlier, bucket for bucket, drawn over this range's bars.
    const before = revenueSeries(extras.lastYear);
    const totals = before.dates.map((d) => before.channels.reduce((s, c) => s + (before.byChannel.get(c).get(d) || 0), 0));
    const y = dates.map((_, i) => (i < totals.length ? Number(totals[i].toFixed(2)) : null));
    traces.push({
      type: "scatter", mode: "lines+markers", name: "Same dates last year", x: dates, y,
      line: { color: "#111827", width: 1.5, dash: "dash" }, marker: { size: 4 },
      customdata: y.map((v, i) => [money(v), before.dates[i] || ""]),
      hovertemplate: "%{customdata[0]} (%{customdata[1]})<extra>Same dates last year</extra>",
    });
    top = Math.max(top, ...y.filter((v) => v !== null));
  }
  const shapes = [];
  if (extras?.forecast?.length) {
    const f = extras.forecast;
    const x = f.map((p) => p.date);
    const level = Math.round((extras.level || 0.95) * 100);
    traces.push(
      { type: "scatter", mode: "lines", x, y: f.map((p) => p.upper), line: { width: 0 }, hoverinfo: "skip", showlegend: false, name: "upper" },
      {
        type: "scatter", mode: "lines", x, y: f.map((p) => Math.max(0, p.lower)), line: { width: 0 }, fill: "tonexty",
        fillcolor: "rgba(124, 58, 237, 0.16)", name: `${level}% interval`, hoverinfo: "skip",
      },
      {
        type: "scatter", mode: "lines", x, y: f.map((p) => p.predicted), name: "Forecast",
        line: { color: "#7c3aed", width: 2.5, dash: "dot" },
        customdata: f.map((p) => [money(p.predicted), money(Math.max(0, p.lower)), money(p.upper)]),
        hovertemplate: "%{customdata[0]} (%{customdata[1]} – %{customdata[2]})<extra>Forecast</extra>",
      },
    );
    top = Math.max(top, ...f.map((p) => Number(p.upper)));
    shapes.push({
      type: "line", xref: "x", yref: "paper", x0: x[0], x1: x[0], y0: 0, y1: 1,
      line: { color: "#7c3aed", width: 1, dash: "dash" },
    });
  }
  if (extras?.anomalies?.length) {
    const a = extras.anomalies;
    traces.push({
      type: "scatter", mode: "markers", name: "Anomaly",
      x: a.map((p) => p.date), y: a.map((p) => p.observed),
      marker: { size: 13, symbol: "circle-open", color: "#dc2626", line: { width: 3 } },
      customdata: a.map((p) => [p.direction === "spike" ? "Unusual spike" : "Unusual drop", money(p.observed), money(p.expected)]),
      hovertemplate: "%{customdata[0]}: %{customdata[1]} (expected %{customdata[2]})<extra></extra>",
    });
    top = Math.max(top, ...a.map((p) => Number(p.observed)));
  }
  await draw(
    el,
    traces,
    layout({
      barmode: "stack",
      bargap: dates.length > 60 ? 0.05 : 0.22,
      hovermode: "x unified",
      showlegend: true,
      shapes,
      yaxis: { ...layout().yaxis, ...moneyAxis(top) },
      xaxis: { ...layout().xaxis, ...bucketAxis(bucket, dates.length) },
    }),
  );
}

export async function drawDistribution(el, points) {
  const rows = points.filter((p) => Number(p.revenue) > 0);
  await draw(
    el,
    [{
      type: "pie",
      hole: 0.58,
      sort: false,
      direction: "clockwise",
      labels: rows.map((p) => channelLabel(p.channel)),
      values: rows.map((p) => Number(p.revenue)),
      marker: { colors: rows.map((p) => channelColor(p.channel)), line: { color: "#fff", width: 2 } },
      // Labels on slices of 4 % or more; the legend and the tooltip name the small ones.
      text: rows.map((p) => (Number(p.share_pct) >= 4 ? `${Number(p.share_pct).toFixed(0)}%` : "")),
      textinfo: "text",
      textposition: "inside",
      insidetextorientation: "horizontal",
      customdata: rows.map((p) => [money(p.revenue), count(p.orders)]),
      hovertemplate: "%{label}<br>%{customdata[0]} · %{customdata[1]} orders<br>%{percent}<extra></extra>",
    }],
    layout({
      margin: { l: 8, r: 8, t: 8, b: 8 },
      legend: { orientation: "h", x: 0.5, xanchor: "center", y: -0.02, yanchor: "top" },
      annotations: [{
        text: `<b>${money(rows.reduce((s, p) => s + Number(p.revenue), 0))}</b><br><span style="font-size:11px;color:#5b6472">total</span>`,
        showarrow: false, font: { size: 18, color: "#111827" }, x: 0.5, y: 0.5, xref: "paper", yref: "paper",
      }],
    }),
  );
}

// A day with a handful of deliveries gives a rate of 0 % or 100 %: noise, not a trend.
export const MIN_DELIVERED = 10;

/** Combine channels into email and SMS rates per day, weighted by delivered messages. */
export function engagementSeries(points) {
  const days = new Map();
  for (const p of points) {
    const medium = p.channel.startsWith("sms") ? "sms" : "email";
    const key = p.date;
    if (!days.has(key)) days.set(key, { email: [0, 0, 0], sms: [0, 0, 0] });
    const acc = days.get(key)[medium];
    const delivered = Number(p.delivered);
    acc[0] += delivered;
    acc[1] += Number(p.open_rate) * delivered;
    acc[2] += Number(p.click_rate) * delivered;
  }
  const dates = [...days.keys()].sort();
  const pick = (medium, i) => dates.map((d) => {
    const acc = days.get(d)[medium];
    return acc[0] >= MIN_DELIVERED ? acc[i] / acc[0] : null;
  });
  return {
    dates,
    emailOpen: pick("email", 1),
    emailClick: pick("email", 2),
    smsClick: pick("sms", 2),
    hasSms: dates.some((d) => days.get(d).sms[0] >= MIN_DELIVERED),
    hasEmail: dates.some((d) => days.get(d).email[0] >= MIN_DELIVERED),
  };
}

// The date `days` days after an ISO date (YYYY-MM-DD), as an ISO date.
const shiftDate = (iso, days) => new Date(Date.parse(`${iso}T00:00:00Z`) + days * 864e5).toISOString().slice(0, 10);

// `lastYear`: { points, range, previousRange } of the comparison range, drawn day for day
// (each of its days moved by the ranges' offset) as fainter dashed lines.
export async function drawEngagement(el, points, lastYear = null) {
  const s = engagementSeries(points);
  const line = (name, y, color, dash, opacity = 1) => ({
    type: "scatter", mode: s.dates.length > 45 ? "lines" : "lines+markers", name, x: s.dates, y, opacity,
    connectgaps: false, line: { color, width: 2.2, dash, shape: "spline", smoothing: 0.4 }, marker: { size: 5 },
    hovertemplate: `%{y:.1%}<extra>${name}</extra>`,
  });
  const traces = [];
  if (s.hasEmail) traces.push(line("Email open rate", s.emailOpen, "#4338ca"), line("Email click rate", s.emailClick, "#0ea5e9"));
  if (s.hasSms) traces.push(line("SMS click rate", s.smsClick, "#d97706", "dot"));
  if (lastYear) {
    const b = engagementSeries(lastYear.points);
    const offset = Math.round((Date.parse(lastYear.range.start) - Date.parse(lastYear.previousRange.start)) / 864e5);
    const at = new Map(b.dates.map((d, i) => [shiftDate(d, offset), i]));
    const align = (ys) => s.dates.map((d) => (at.has(d) ? ys[at.get(d)] : null));
    if (s.hasEmail) {
      traces.push(line("Email open rate, same dates last year", align(b.emailOpen), "#4338ca", "dash", 0.5),
        line("Email click rate, same dates last year", align(b.emailClick), "#0ea5e9", "dash", 0.5));
    }
    if (s.hasSms) traces.push(line("SMS click rate, same dates last year", align(b.smsClick), "#d97706", "dash", 0.5));
  }
  await draw(
    el,
    traces,
    layout({
      hovermode: "x unified",
      yaxis: { ...layout().yaxis, tickformat: ".0%", rangemode: "tozero" },
      xaxis: { ...layout().xaxis, type: "date", tickformat: "%b %d" },
    }),
  );
}

export async function drawTop(el, rows, { value, format, color, label }) {
  const items = rows.slice().reverse();
  await draw(
    el,
    [{
      type: "bar",
      orientation: "h",
      y: items.map((r) => r.name),
      x: items.map((r) => Number(r[value] ?? 0)),
      marker: { color },
      text: items.map((r) => format(r[value] ?? 0)),
      textposition: "auto",
      textangle: 0,
      insidetextanchor: "end",
      textfont: { color: "#fff" },
      outsidetextfont: { color: "#111827" },
      cliponaxis: false,
      hovertemplate: `%{y}<br>${label}: %{text}<extra></extra>`,
    }],
    layout({
      margin: { l: 8, r: 16, t: 4, b: 24 },
      bargap: 0.35,
      xaxis: { ...layout().xaxis, showticklabels: false, showgrid: false, zeroline: false, showline: false },
      yaxis: { ...layout().yaxis, automargin: true, gridcolor: "rgba(0,0,0,0)", ticksuffix: "  " },
      showlegend: false,
    }),
  );
}

/** A campaign's first hours after the send: revenue bars (money axis on the right) and opens
 * and clicks per hour (lines, left axis). */
export async function drawCampaignHours(el, hours) {
  const x = hours.map((p) => p.hour);
  const revenue = hours.map((p) => Number(p.revenue));
  const axis = moneyAxis(Math.max(0, ...revenue));
  await draw(
    el,
    [
      { type: "bar", name: "Revenue", x, y: revenue, yaxis: "y2", marker: { color: "#c7d2fe" },
        customdata: revenue.map((v) => money(v)), hovertemplate: "%{customdata}<extra>Revenue</extra>" },
      { type: "scatter", mode: "lines", name: "Opens", x, y: hours.map((p) => p.opens), line: { color: "#4338ca", width: 2 },
        hovertemplate: "%{y:,}<extra>Opens</extra>" },
      { type: "scatter", mode: "lines", name: "Clicks", x, y: hours.map((p) => p.clicks), line: { color: "#0ea5e9", width: 2, dash: "dot" },
        hovertemplate: "%{y:,}<extra>Clicks</extra>" },
    ],
    layout({
      hovermode: "x unified",
      showlegend: true,
      margin: { l: 52, r: 64, t: 6, b: 40 },
      xaxis: { ...layout().xaxis, title: { text: "hours after the send", font: { size: 11 } }, dtick: 12 },
      yaxis: { ...layout().yaxis, rangemode: "tozero", tickformat: ",d" },
      yaxis2: { ...layout().yaxis, ...axis, overlaying: "y", side: "right", showgrid: false },
    }),
  );
}

const STATUS_COLOR = { Healthy: "#15803d", "Room for improvement": "#d97706", "Needs attention": "#dc2626" };

/** One list-health rate per campaign, with Klaviyo's healthy threshold as a dashed line. The
 * status is written on each bar (not shown by colour alone). */
export async function drawHealth(el, rows, key) {
  const t = HEALTH[key];
  const items = rows.filter((r) => r[key] !== null && r[key] !== undefined).slice().reverse();
  const values = items.map((r) => Number(r[key]));
  const status = items.map((r) => healthStatus(key, r[key]));
  const shapes = [];
  const annotations = [];
  if (t.healthy !== null) {
    shapes.push({ type: "line", xref: "x", yref: "paper", x0: t.healthy, x1: t.healthy, y0: 0, y1: 1,
      line: { color: "#15803d", width: 1.5, dash: "dash" } });
    annotations.push({ x: t.healthy, xref: "x", y: 1, yref: "paper", yanchor: "bottom", showarrow: false,
      text: `Klaviyo healthy: below ${smallRate(t.healthy)}`, font: { size: 11, color: "#15803d" } });
  }
  const top = Math.max(t.healthy || 0, ...values) * 1.25 || 0.01;
  await draw(
    el,
    [{
      type: "bar", orientation: "h", y: items.map((r) => r.name), x: values,
      marker: { color: status.map((s) => STATUS_COLOR[s] || "#4338ca") },
      text: values.map((v, i) => `${smallRate(v)}${status[i] ? ` · ${status[i]}` : ""}`),
      textposition: "outside", cliponaxis: false,
      hovertemplate: "%{y}<br>%{text}<extra></extra>",
    }],
    layout({
      margin: { l: 8, r: 16, t: 22, b: 28 },
      bargap: 0.3,
      shapes,
      annotations,
      showlegend: false,
      xaxis: { ...layout().xaxis, range: [0, top], tickformat: top < 0.01 ? ".2%" : ".1%" },
      yaxis: { ...layout().yaxis, automargin: true, gridcolor: "rgba(0,0,0,0)", ticksuffix: "  " },
    }),
  );
}

export async function purge(el) {
  if (window.Plotly && el) window.Plotly.purge(el);
}
