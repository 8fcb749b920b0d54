// Number, date and text formatting shared by every panel (the browser's locale).

let currencyCode = "USD";

export function setCurrency(code) {
  currencyCode = code || "USD";
}

const cache = new Map();
function formatter(key, options) {
  if (!cache.has(key)) cache.set(key, new Intl.NumberFormat(undefined, options));
  return cache.get(key);
}

export function money(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  return formatter(`money-${currencyCode}`, {
    style: "currency", currency: currencyCode, minimumFractionDigits: 2, maximumFractionDigits: 2,
  }).format(n);
}

/** Money with as many decimals as `step` needs (axis ticks): exact, never rounded to "k". */
export function moneyTick(value, step = 1) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  const digits = step >= 1 || step <= 0 ? 0 : Math.min(2, Math.ceil(-Math.log10(step) - 1e-9));
  return formatter(`money-tick-${currencyCode}-${digits}`, {
    style: "currency", currency: currencyCode, minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(n);
}

/** Round axis ticks from 0 to at least `max`: about `target` steps of 1, 2 or 5 × 10^k. */
export function niceTicks(max, target = 5) {
  const top = Math.max(Number(max) || 0, 0);
  if (top === 0) return { step: 1, values: [0, 1] };
  const raw = top / target;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const values = [];
  for (let i = 0; i * step < top + step * 1e-9 || values.length < 2; i += 1) values.push(Number((i * step).toPrecision(12)));
  if (values[values.length - 1] < top) values.push(Number((values.length * step).toPrecision(12)));
  return { step, values };
}

export function count(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  return formatter("count", { maximumFractionDigits: 0 }).format(n);
}

/** A fraction (0.2534) as a percentage with two decimals (25.34%). */
export function rate(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  return formatter("rate", { style: "percent", minimumFractionDigits: 2, maximumFractionDigits: 2 }).format(n);
}

/** A number that already is a percentage (12.5) with one decimal (12.5%). */
export function percent(value) {
  const n = Number(value);
  if (!Number.isFinite(n)) return "—";
  return `${formatter("percent", { minimumFractionDigits: 1, maximumFractionDigits: 1 }).format(n)}%`;
}

export function change(pct) {
  if (pct === null || pct === undefined || !Number.isFinite(Number(pct))) {
    return { text: "n/a", direction: "flat", label: "no previous figure to compare" };
  }
  const n = Number(pct);
  const direction = n > 0 ? "up" : n < 0 ? "down" : "flat";
  const arrow = direction === "up" ? "▲" : direction === "down" ? "▼" : "■";
  const text = `${arrow} ${percent(Math.abs(n))}`;
  const word = direction === "up" ? "up" : direction === "down" ? "down" : "unchanged";
  return { text, direction, label: `${word} ${percent(Math.abs(n))} on the previous period` };
}

export function day(isoDate, options = { day: "numeric", month: "short", year: "numeric" }) {
  if (!isoDate) return "—";
  const [y, m, d] = isoDate.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d)).toLocaleDateString(undefined, { ...options, timeZone: "UTC" });
}

export function rangeText(range) {
  if (!range) return "";
  if (range.start === range.end) return day(range.start);
  return `${day(range.start)} – ${day(range.end)}`;
}

export function dateTime(iso, timeZone) {
  if (!iso) return "—";
  const options = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
  try {
    return new Date(iso).toLocaleString(undefined, timeZone ? { ...options, timeZone } : options);
  } catch {
    return new Date(iso).toLocaleString(undefined, options);
  }
}

export function ago(iso, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (seconds < 45) return "just now";
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) return `${minutes} min ago`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `${hours} h ago`;
  return `${Math.round(hours / 24)} days ago`;
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  const s = ms / 1000;
  if (s < 90) return `${s.toFixed(1)} s`;
  return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
}

export const CHANNELS = {
  email_campaign: { label: "Email campaigns", color: "#4338ca" },
  email_flow: { label: "Email flows", color: "#0ea5e9" },
  sms_campaign: { label: "SMS campaigns", color: "#f59e0b" },
  sms_flow: { label: "SMS flows", color: "#10b981" },
  unattributed: { label: "Not attributed", color: "#b6bdc9" },
};

export function channelLabel(name) {
  return CHANNELS[name]?.label || name.replaceAll("_", " ");
}

export function channelColor(name) {
  return CHANNELS[name]?.color || "#64748b";
}

/** Build an element: h("td", {class: "num"}, "12"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Klaviyo's "Healthy" and "Needs attention" limits for a campaign (the deliverability tab of a
// sent campaign, help.klaviyo.com article 12695416712219); fractions. Click-to-open has none.
export const HEALTH = {
  bounce_rate: { label: "Bounce rate", healthy: 0.01, attention: 0.02 },
  spam_rate: { label: "Spam complaint rate", healthy: 0.0001, attention: 0.0005 },
  unsubscribe_rate: { label: "Unsubscribe rate", healthy: 0.003, attention: 0.01 },
  click_to_open_rate: { label: "Click-to-open rate", healthy: null, attention: null },
};

/** Klaviyo's word for a rate: Healthy, Room for improvement, Needs attention (or null). */
export function healthStatus(key, value) {
  const t = HEALTH[key];
  const n = Number(value);
  if (!t || t.healthy === null || value === null || value === undefined || !Number.isFinite(n)) return null;
  if (n < t.healthy) return "Healthy";
  return n > t.attention ? "Needs attention" : "Room for improvement";
}

/** A small rate (0.00012) as a percentage with enough decimals to be read (0.012%). */
export function smallRate(value) {
  const n = Number(value);
  if (value === null || value === undefined || !Number.isFinite(n)) return "—";
  const digits = n !== 0 && Math.abs(n) < 0.001 ? 3 : 2;
  return formatter(`small-rate-${digits}`, { style: "percent", minimumFractionDigits: digits, maximumFractionDigits: digits }).format(n);
}
