// The sync panel: last run per stream, history, and syncs started from here with live progress.

import { api, ApiError } from "./api.js";
import { ago, count, dateTime, duration, h } from "./format.js";

const POLL_MS = 1000;
const STREAM_LABELS = {
  metrics: "Metrics", campaigns: "Campaigns", flows: "Flows", lists: "Lists", segments: "Segments",
  forms: "Forms", profiles: "Profiles", events: "Events", reports: "Reports", templates: "Templates",
};

// Rows written by a run; 0 after an incremental run means Klaviyo had nothing new.
const rowsCell = (run) => {
  const n = totalRows(run.rows);
  return n === 0 && run.status === "succeeded" ? h("span", { title: "Klaviyo had nothing new since the last sync" }, "0 · nothing new") : count(n);
};

const panel = () => document.getElementById("sync");
const progressEl = () => document.getElementById("sync-progress");

const totalRows = (rows) => Object.values(rows || {}).reduce((s, n) => s + Number(n || 0), 0);

export class SyncPanel {
  constructor({ onFinished, onError, timezone }) {
    this.onFinished = onFinished;
    this.onError = onError;
    this.timezone = timezone;
    this.timer = null;
    this.watching = false;
    this.lastStatus = null;
    document.getElementById("sync-all").addEventListener("click", () => this.start("all"));
  }

  setPhase(phase) {
    progressEl().dataset.phase = phase;
    panel().dataset.sync = phase;
  }

  async load() {
    const el = panel();
    el.dataset.state = "loading";
    try {
      const [status, runs] = await Promise.all([api("sync/status"), api("sync/runs", { params: { limit: 20 } })]);
      this.render(status, runs);
      el.dataset.state = status.streams.some((s) => s.last_run) ? "ready" : "empty";
      if (status.running && !this.watching) this.watch();
    } catch (error) {
      if (error.name === "AbortError") return;
      el.dataset.state = "error";
      const body = document.querySelector("#sync-table tbody");
      body.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "empty err-text" },
        `Could not read the sync status: ${error.message} `,
        h("button", { type: "button", class: "btn small", onclick: () => this.load() }, "Retry"))));
      this.onError(error);
    }
  }

  render(status, runs) {
    this.lastStatus = status;
    const busy = status.running;
    document.getElementById("sync-all").disabled = busy;
    const tbody = document.querySelector("#sync-table tbody");
    tbody.replaceChildren(...status.streams.map((s) => {
      const run = s.last_run;
      const live = s.running;
      const state = live ? "running" : run ? run.status : "never";
      return h("tr", { "data-stream": s.stream },
        h("th", { scope: "row" }, STREAM_LABELS[s.stream] || s.stream),
        h("td", {}, h("span", { class: `chip ${state}` }, live ? "running" : run ? run.status : "never run")),
        h("td", {}, run ? h("span", { title: dateTime(run.started_at, this.timezone) }, ago(run.finished_at || run.started_at)) : "—"),
        h("td", { class: "num" }, live ? duration(Math.round(live.elapsed_s * 1000)) : run ? duration(run.duration_ms) : "—"),
        h("td", { class: "num" }, live ? count(totalRows(live.rows)) : run ? rowsCell(run) : "—"),
        h("td", { class: "num" }, run && !live ? (run.errors ? h("span", { class: "neg", title: run.error_message || "" }, count(run.errors)) : "0") : "—"),
        h("td", { class: "num" }, h("button", {
          type: "button", class: "btn small", disabled: busy,
          "aria-label": `Sync ${STREAM_LABELS[s.stream] || s.stream}`,
          onclick: () => this.start(s.stream),
        }, "Sync")),
      );
    }));
    const failed = status.streams.filter((s) => s.last_run && s.last_run.status === "failed");
    const sub = document.getElementById("sync-sub");
    sub.textContent = failed.length
      ? `${failed.length} stream${failed.length > 1 ? "s" : ""} failed last time: ${failed.map((s) => STREAM_LABELS[s.stream] || s.stream).join(", ")}`
      : "Last run of each stream from Klaviyo";
    sub.className = failed.length ? "sub neg" : "sub";
    if (runs) this.renderHistory(runs);
    if (busy) this.renderProgress(status);
  }

  renderHistory(runs) {
    this.newestRunId = Math.max(this.newestRunId || 0, ...runs.runs.map((r) => r.id));
    const tbody = document.querySelector("#history-table tbody");
    if (!runs.runs.length) {
      tbody.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "empty" }, "No sync has run yet.")));
      return;
    }
    tbody.replaceChildren(...runs.runs.map((r) => h("tr", { "data-run": String(r.id) },
      h("td", {}, `#${r.id}`),
      h("td", {}, STREAM_LABELS[r.stream] || r.stream),
      h("td", {}, h("span", { class: `chip ${r.status}` }, r.status)),
      h("td", {}, dateTime(r.started_at, this.timezone)),
      h("td", { class: "num" }, duration(r.duration_ms)),
      h("td", { class: "num" }, rowsCell(r)),
      h("td", { class: "err-text" }, r.error_message || ""),
    )));
  }

  renderProgress(status) {
    const el = progressEl();
    const live = status.streams.filter((s) => s.running);
    el.hidden = false;
    this.setPhase("running");
    if (!live.length) {
      el.replaceChildren(h("strong", {}, "Sync running…"), " starting the next stream", h("div", { class: "bar indeterminate" }, h("span")));
      return;
    }
    el.replaceChildren(...live.map((s) => {
      const p = s.running;
      const known = p.fraction !== null && p.fraction !== undefined;
      const pct = known ? Math.round(p.fraction * 100) : null;
      return h("div", { class: "live", "data-stream": s.stream },
        h("strong", {}, `Syncing ${STREAM_LABELS[s.stream] || s.stream}`),
        ` — ${count(p.records)} records fetched, ${count(totalRows(p.rows))} rows written`,
        known ? `, ${pct}% done` : "",
        p.rate_per_s ? ` (${count(p.rate_per_s)}/s)` : "",
        h("div", {
          class: `bar${known ? "" : " indeterminate"}`, role: "progressbar", "aria-label": `Progress of ${s.stream}`,
          "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": known ? String(pct) : null,
        }, h("span", { style: known ? `width:${Math.max(2, pct)}%` : null })),
      );
    }));
  }

  async start(stream) {
    // Runs newer than this one are this sync's (not an earlier sync of the last minute).
    this.baselineRunId = this.newestRunId || 0;
    const el = progressEl();
    el.hidden = false;
    el.className = "sync-progress";
    this.setPhase("starting");
    el.replaceChildren(h("strong", {}, "Starting the sync…"), h("div", { class: "bar indeterminate" }, h("span")));
    document.querySelectorAll("#sync button").forEach((b) => { if (b.closest("#sync-table") || b.id === "sync-all") b.disabled = true; });
    try {
      await api(`sync/${stream}`, { method: "POST" });
    } catch (error) {
      if (!(error instanceof ApiError) || error.status !== 409) {
        this.setPhase("refused");
        el.className = "sync-progress banner error";
        const text = error.status === 403
          ? "This API key has the reader role: starting a sync needs an admin key."
          : error.status === 503
            ? `Cannot sync now: ${error.message}`
            : `The sync did not start: ${error.message}`;
        el.replaceChildren(text);
        if (error.status === 401) this.onError(error);
        await this.load();
        return;
      }
    }
    this.watch(stream);
  }

  watch(stream = null) {
    this.watching = true;
    this.started = this.started || Date.now();
    this.stream = stream;
    clearTimeout(this.timer);
    const tick = async () => {
      try {
        const status = await api("sync/status");
        if (status.running) {
          this.render(status, null);
          this.timer = setTimeout(tick, POLL_MS);
          return;
        }
        const runs = await api("sync/runs", { params: { limit: 20 } });
        this.render(status, runs);
        this.finish(status, runs);
      } catch (error) {
        if (error.name === "AbortError") return;
        this.timer = setTimeout(tick, POLL_MS * 3);
      }
    };
    tick();
  }

  finish(status, runs) {
    this.watching = false;
    const baseline = this.baselineRunId;
    const since = this.started ? this.started - 60_000 : 0;
    this.started = null;
    // This sync's runs: newer than the newest before it started (by time when started elsewhere).
    const recent = runs.runs.filter((r) => (baseline !== undefined ? r.id > baseline : new Date(r.started_at).getTime() >= since));
    this.baselineRunId = undefined;
    const failed = recent.filter((r) => r.status !== "succeeded");
    const rows = recent.reduce((s, r) => s + totalRows(r.rows), 0);
    const streams = new Set(recent.map((r) => r.stream)).size;
    const idle = recent.filter((r) => r.status === "succeeded" && totalRows(r.rows) === 0).length;
    const el = progressEl();
    el.hidden = false;
    el.className = failed.length ? "sync-progress banner error" : "sync-progress";
    this.setPhase(failed.length ? "failed" : "finished");
    el.replaceChildren(
      h("strong", {}, failed.length ? "Sync finished with errors" : "Sync finished"),
      ` — ${streams} stream${streams === 1 ? "" : "s"} synced, ${count(rows)} rows written`,
      idle ? ` (${idle === streams ? "nothing new" : `${idle} with nothing new`})` : "",
      failed.length ? `; failed: ${failed.map((r) => `${r.stream} (${r.error_message || r.status})`).join(", ")}` : ".",
    );
    panel().dataset.state = "ready";
    this.onFinished();
  }

  stop() {
    clearTimeout(this.timer);
  }
}
