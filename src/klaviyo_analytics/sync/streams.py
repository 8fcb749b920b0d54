"""One function per entity stream; each writes page by page through the repositories.

Every page is one transaction: its rows, its quarantined records, its archived body and (where
the stream is incremental) its state move together. The registry of streams (`registry.py`)
names these functions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.audiences import (
    FormRepository,
    ListRepository,
    SegmentRepository,
    TemplateRepository,
)
from klaviyo_analytics.db.repos.campaigns import CampaignMessageRepository, CampaignRepository
from klaviyo_analytics.db.repos.flows import (
    FlowActionRepository,
    FlowMessageRepository,
    FlowRepository,
)
from klaviyo_analytics.db.repos.metrics import MetricRepository
from klaviyo_analytics.db.repos.profiles import ProfileRepository
from klaviyo_analytics.db.repos.sync_state import (
    Report,
    ReportRepository,
    StreamState,
    SyncStateRepository,
)
from klaviyo_analytics.sync import mapping
from klaviyo_analytics.sync.context import RunArgs, StreamContext
from klaviyo_analytics.sync.state import iso, parse

R = TypeVar("R")
_state = SyncStateRepository()
SEND_ACTIONS = frozenset({"SEND_EMAIL", "SEND_SMS", "SEND_PUSH_NOTIFICATION", "SEND_WHATSAPP"})
REPORTS_PER_DAY = 225
CAMPAIGN_STATISTICS = (
    "recipients",
    "delivered",
    "bounced",
    "opens",
    "opens_unique",
    "clicks",
    "clicks_unique",
    "conversions",
    "conversion_uniques",
    "conversion_value",
    "unsubscribes",
    "spam_complaints",
)


async def sync_metrics(ctx: StreamContext, args: RunArgs) -> None:
    """Copy every metric (a small, complete list each time)."""
    repo = MetricRepository()
    async for page in ctx.client.iter_metrics():
        await ctx.write("klaviyo_metrics", repo, [mapping.metric(m) for m in page.records], page)


# Klaviyo's predictive analytics change without a profile's `updated` moving (predictions are
# recomputed as time passes and orders arrive), so an incremental run alone would keep them
# stale: a run is a full re-read when the last complete one is older than this.
PREDICTIONS_REFRESH = timedelta(days=7)


async def sync_profiles(ctx: StreamContext, args: RunArgs) -> None:
    """Copy profiles updated since the last run, with Klaviyo's predictive analytics
    (unless `PROFILE_PREDICTIONS` is off: then they are not asked for, and stored as NULL).

    Profiles come sorted by `updated`, so every stored page moves the cursor to the newest
    `updated` stored: a run that stops part-way resumes after its last page, not from the start.
    The filter is `greater-than` only, so a run starts one second before the cursor and
    re-reads that second (profiles sharing the cursor's second are never skipped).

    When the last complete re-read of every profile started `PREDICTIONS_REFRESH` ago or more
    (or never, or with `full`), the run re-reads every profile instead (a "pass"), so that
    each profile's predictions are at most that old. A pass keeps its own cursor in the state
    (`predictions_pass`) and resumes after its last stored page like any run; once complete,
    its start is remembered as `predictions_read_at`.
    """
    repo = ProfileRepository()
    started = ctx.clock()
    saved = await ctx.db.run(lambda c: _state.get(c, "profiles", ""))
    meta: dict[str, Any] = dict(saved.state) if saved else {}
    cursor = parse(saved.cursor_value) if saved and saved.cursor_value and not args.full else None
    read_at = meta.get("predictions_read_at")
    sweep: dict[str, Any] | None = meta.get("predictions_pass")
    predictions = ctx.options.profile_predictions
    due = predictions and (read_at is None or started - parse(read_at) >= PREDICTIONS_REFRESH)
    if not predictions:
        sweep = None
    elif args.full or (sweep is None and due):
        sweep = {"started": iso(started), "cursor": None}
    reached = sweep["cursor"] if sweep is not None else (iso(cursor) if cursor else None)
    after = parse(reached) - timedelta(seconds=1) if reached else None
    newest = cursor
    pages = ctx.client.iter_profiles(updated_after=after, predictive_analytics=predictions)
    async for page in pages:
        records = [mapping.profile(p) for p in page.records]
        seen = [r.updated for r in records if r.updated is not None]
        if seen:
            newest = max([*seen, *([newest] if newest else [])])
            if sweep is not None:
                done = [parse(sweep["cursor"])] if sweep["cursor"] else []
                sweep = {**sweep, "cursor": iso(max([*seen, *done]))}
        if sweep is not None:
            meta = {**meta, "predictions_pass": sweep}
        state = StreamState("profiles", "", iso(newest) if newest else None, meta)
        await ctx.write("klaviyo_profiles", repo, records, page, state=state)
    if sweep is not None:
        meta["predictions_read_at"] = sweep["started"]
    meta.pop("predictions_pass", None)
    final = StreamState("profiles", "", iso(newest) if newest else None, meta)
    await ctx.db.run(lambda c: _state.upsert(c, final))


async def sync_campaigns(ctx: StreamContext, args: RunArgs) -> None:
    """Copy email and SMS campaigns with their messages (joined in the same pages)."""
    campaigns, messages = CampaignRepository(), CampaignMessageRepository()
    for channel in ("email", "sms"):
        async for page in ctx.client.iter_campaigns(channel):
            rows = [mapping.campaign(c) for c in page.records]
            msgs = [mapping.campaign_message(m, c.id) for c in page.records for m in c.messages]
            await ctx.write(
                "klaviyo_campaigns",
                campaigns,
                rows,
                page,
                also=[("klaviyo_campaign_messages", messages, msgs)],
            )


async def sync_flows(ctx: StreamContext, args: RunArgs) -> None:
    """Copy flows; their actions and messages are fetched for flows changed since last time."""
    flows, actions, messages = FlowRepository(), FlowActionRepository(), FlowMessageRepository()
    saved = await ctx.db.run(lambda c: _state.get(c, "flows", ""))
    known: dict[str, str] = dict(saved.state.get("updated", {})) if saved else {}
    async for page in ctx.client.iter_flows():
        rows = [mapping.flow(f) for f in page.records]
        await ctx.write("klaviyo_flows", flows, rows, page)
        for flow in rows:
            stamp = iso(flow.updated) if flow.updated else ""
            if known.get(flow.id) == stamp and stamp:
                continue
            async for action_page in ctx.client.iter_flow_actions(flow.id):
                acts = [mapping.flow_action(a, flow.id) for a in action_page.records]
                await ctx.write("klaviyo_flow_actions", actions, acts, action_page)
                for act in acts:
                    if (act.action_type or "").upper() not in SEND_ACTIONS:
                        continue
                    async for msg_page in ctx.client.iter_flow_messages(act.id):
                        msgs = [mapping.flow_message(m, act) for m in msg_page.records]
                        await ctx.write("klaviyo_flow_messages", messages, msgs, msg_page)
            known[flow.id] = stamp
            await ctx.db.run(
                lambda c: _state.upsert(c, StreamState("flows", "", None, {"updated": known}))
            )


async def sync_lists(ctx: StreamContext, args: RunArgs) -> None:
    """Copy every list."""
    repo = ListRepository()
    async for page in ctx.client.iter_lists():
        await ctx.write(
            "klaviyo_lists", repo, [mapping.klaviyo_list(x) for x in page.records], page
        )


async def sync_segments(ctx: StreamContext, args: RunArgs) -> None:
    """Copy every segment, each with its profile count (one request per segment)."""
    repo = SegmentRepository()
    async for page in ctx.client.iter_segments():
        detailed = [await ctx.client.get_segment(s.id) for s in page.records]
        await ctx.write("klaviyo_segments", repo, [mapping.segment(s) for s in detailed], page)


async def sync_forms(ctx: StreamContext, args: RunArgs) -> None:
    """Copy every signup form."""
    repo = FormRepository()
    async for page in ctx.client.iter_forms():
        await ctx.write("klaviyo_forms", repo, [mapping.form(f) for f in page.records], page)


async def sync_templates(ctx: StreamContext, args: RunArgs) -> None:
    """Copy every email template."""
    repo = TemplateRepository()
    async for page in ctx.client.iter_templates():
        await ctx.write(
            "klaviyo_templates", repo, [mapping.template(t) for t in page.records], page
        )


async def sync_reports(ctx: StreamContext, args: RunArgs) -> None:
    """Fetch campaign and flow values (last 365 days) and flow series (last 30 days), with
    conversions counted as Placed Order (nothing to ask before that metric is synced)."""
    metric = await ctx.db.run(lambda c: MetricRepository().find_by_name(c, "Placed Order"))
    if metric:
        await request_reports(ctx, conversion_metric_id=metric[0].id)


async def request_reports(
    ctx: StreamContext, *, conversion_metric_id: str, today: date | None = None
) -> int:
    """Ask for the reports within the day's quota; return the number of requests made.

    The Reporting API allows 225 requests a day; requests are counted per day in the sync
    state and a run stops asking once the day's quota is spent (the rest waits for tomorrow).
    """
    day = (today or datetime.now(UTC).date()).isoformat()
    quota_key = f"quota:{day}"
    saved = await ctx.db.run(lambda c: _state.get(c, "reports", quota_key))
    used = int(saved.state.get("requests", 0)) if saved else 0
    repo = ReportRepository()
    made = 0
    plans: list[tuple[str, str]] = [
        ("campaign-values", "last_365_days"),
        ("flow-values", "last_365_days"),
        ("flow-series", "last_30_days"),
    ]
    for report_type, timeframe in plans:
        if used + made >= REPORTS_PER_DAY:
            break
        tf = k.Timeframe(key=timeframe)
        rows: list[Report] = []
        if report_type == "campaign-values":
            result = await ctx.client.query_campaign_values(
                statistics=CAMPAIGN_STATISTICS,
                timeframe=tf,
                conversion_metric_id=conversion_metric_id,
            )
            rows = [
                _report(
                    report_type,
                    timeframe,
                    r.groupings,
                    r.statistics,
                    "campaign_id",
                    "campaign_message_id",
                )
                for r in result.results
            ]
        elif report_type == "flow-values":
            result = await ctx.client.query_flow_values(
                statistics=CAMPAIGN_STATISTICS,
                timeframe=tf,
                conversion_metric_id=conversion_metric_id,
            )
            rows = [
                _report(
                    report_type, timeframe, r.groupings, r.statistics, "flow_id", "flow_message_id"
                )
                for r in result.results
            ]
        else:
            series = await ctx.client.query_flow_series(
                statistics=(
                    "recipients",
                    "opens_unique",
                    "clicks_unique",
                    "conversions",
                    "conversion_value",
                ),
                timeframe=tf,
                interval="daily",
                conversion_metric_id=conversion_metric_id,
            )
            stamps = [iso(d) for d in series.date_times]
            rows = [
                _report(
                    report_type,
                    timeframe,
                    r.groupings,
                    r.statistics,
                    "flow_id",
                    "flow_message_id",
                    stamps,
                )
                for r in series.results
            ]
        made += 1
        state = StreamState("reports", quota_key, None, {"requests": used + made})

        async def work(conn: Conn, rows: list[Report] = rows, state: StreamState = state) -> None:
            ctx.counters.add_rows(
                "klaviyo_reports", await repo.upsert_many(conn, rows), fetched=len(rows), pages=1
            )
            await _state.upsert(conn, state)

        await ctx.db.run(work)
    return made


def _report(
    report_type: str,
    timeframe: str,
    groupings: dict[str, Any],
    statistics: dict[str, Any],
    source_key: str,
    message_key: str,
    date_times: list[str] | None = None,
) -> Report:
    return Report(
        report_type=report_type,
        timeframe=timeframe,
        source_id=str(groupings.get(source_key) or ""),
        message_id=str(groupings.get(message_key) or ""),
        channel=groupings.get("send_channel"),
        statistics=statistics,
        date_times=date_times,
    )
