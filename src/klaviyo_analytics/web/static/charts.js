// Charts drawn with the plotly.js bundle of the installed `plotly` Python package (/vendor).

import { CHANNELS, channelColor, channelLabel, count, money, moneyShort } from "./format.js";

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

/** Sum revenue per channel and day; return the channels in a stable order and the dates. */
export function revenueSeries(points) {
  const dates = [...new Set(points.map((p) => p.date))].sort();
  const byChannel = new Map();
  for (const p of points) {
    if (!byChannel.has(p.channel)) byChannel.set(p.channel, new Map());
    byChannel.get(p.channel).set(p.date, Number(p.revenue));
  }
  const channels = [...byChannel.keys()].sort(
    (a, b) => (CHANNEL_ORDER.indexOf(a) + 99) % 99 - (CHANNEL_ORDER.indexOf(b) + 99) % 99,
  );
  return { dates, channels, byChannel };
}

export async function drawRevenue(el, points, extras) {
  const { dates, channels, byChannel } = revenueSeries(points);
  const traces = channels
    .filter((c) => [...byChannel.get(c).values()].some((v) => v !== 0))
    .map((c) => ({
      type: "bar",
      name: channelLabel(c),
      x: dates,
      y: dates.map((d) => byChannel.get(c).get(d) || 0),
      marker: { color: channelColor(c) },
      hovertemplate: `%{y:$,.2f}<extra>${channelLabel(c)}</extra>`,
    }));
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
        customdata: f.map((p) => [p.lower, p.upper]),
        hovertemplate: "%{y:$,.0f} (%{customdata[0]:$,.0f} – %{customdata[1]:$,.0f})<extra>Forecast</extra>",
      },
    );
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
      customdata: a.map((p) => [p.direction === "spike" ? "Unusual spike" : "Unusual drop", p.expected]),
      hovertemplate: "%{customdata[0]}: %{y:$,.0f} (expected %{customdata[1]:$,.0f})<extra></extra>",
    });
  }
  await draw(
    el,
    traces,
    layout({
      barmode: "stack",
      bargap: dates.length > 60 ? 0.05 : 0.22,
      hovermode: "x unified",
      shapes,
      yaxis: { ...layout().yaxis, tickprefix: "", tickformat: "$,.0s", rangemode: "tozero" },
      xaxis: { ...layout().xaxis, type: "date", tickformat: "%b %d" },
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
        text: `<b>${moneyShort(rows.reduce((s, p) => s + Number(p.revenue), 0))}</b><br><span style="font-size:11px;color:#5b6472">total</span>`,
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

export async function drawEngagement(el, points) {
  const s = engagementSeries(points);
  const line = (name, y, color, dash) => ({
    type: "scatter", mode: s.dates.length > 45 ? "lines" : "lines+markers", name, x: s.dates, y,
    connectgaps: false, line: { color, width: 2.2, dash, shape: "spline", smoothing: 0.4 }, marker: { size: 5 },
    hovertemplate: `%{y:.1%}<extra>${name}</extra>`,
  });
  const traces = [];
  if (s.hasEmail) traces.push(line("Email open rate", s.emailOpen, "#4338ca"), line("Email click rate", s.emailClick, "#0ea5e9"));
  if (s.hasSms) traces.push(line("SMS click rate", s.smsClick, "#d97706", "dot"));
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

export async function purge(el) {
  if (window.Plotly && el) window.Plotly.purge(el);
}
