"""Every stream, declared once: how it runs, what it writes, its cursor, what it needs first,
when the scheduler runs it, which cached answers it changes and what it leaves to refresh.

The runner, `sync all`'s order, the scheduler, the API (stream names, cache invalidation) and
the CLI all read this registry. Adding a stream is one `Stream(...)` here plus its function
(fetch, mapping, repository) in `streams.py`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from klaviyo_analytics.sync import backfill, streams
from klaviyo_analytics.sync.context import RunArgs, StreamContext

# How a stream knows where it stopped:
# "none"      — it re-reads its whole (small) collection every run;
# "updated"   — it asks only for records updated after its cursor;
# "per-flow"  — it remembers each flow's `updated` and re-reads the actions of changed flows;
# "windows"   — disjoint time windows, each with its own page cursor (backfills resume);
# "daily-quota" — it counts requests per day against the API's daily quota.
CursorKind = Literal["none", "updated", "per-flow", "windows", "daily-quota"]
# Derived data a stream's new rows leave to be recomputed (by the sync's after-events hooks).
Refresh = Literal["aggregates", "facts"]


@dataclass(frozen=True)
class Stream:
    """One stream of an account."""

    name: str
    run: Callable[[StreamContext, RunArgs], Awaitable[None]]
    tables: tuple[str, ...]
    cursor: CursorKind
    schedule: str
    cache_groups: frozenset[str]
    after: tuple[str, ...] = ()
    refreshes: tuple[Refresh, ...] = ()


def _groups(*names: str) -> frozenset[str]:
    return frozenset(names)


# In dependency order: each stream comes after the streams named in its `after`.
REGISTRY: tuple[Stream, ...] = (
    Stream("metrics", streams.sync_metrics, ("klaviyo_metrics",), "none", "0 1 * * *",
           _groups("metrics", "analytics", "forecast", "overview", "charts")),
    Stream("campaigns", streams.sync_campaigns,
           ("klaviyo_campaigns", "klaviyo_campaign_messages"), "none", "0 */3 * * *",
           _groups("campaigns", "overview", "charts")),
    Stream("flows", streams.sync_flows,
           ("klaviyo_flows", "klaviyo_flow_actions", "klaviyo_flow_messages"), "per-flow",
           "0 */6 * * *", _groups("flows", "overview", "charts")),
    Stream("lists", streams.sync_lists, ("klaviyo_lists",), "none", "15 */6 * * *",
           _groups("overview")),
    Stream("segments", streams.sync_segments, ("klaviyo_segments",), "none", "20 */6 * * *",
           _groups("segments", "charts")),
    Stream("forms", streams.sync_forms, ("klaviyo_forms",), "none", "25 */6 * * *",
           _groups("forms", "overview", "charts")),
    Stream("templates", streams.sync_templates, ("klaviyo_templates",), "none", "40 */6 * * *",
           _groups()),
    Stream("profiles", streams.sync_profiles, ("klaviyo_profiles",), "updated", "0 2 * * *",
           _groups("overview")),
    # Events name their metric, profile and campaign message: those streams go first, so that
    # engagement is attributed to campaigns on the first sync.
    Stream("events", backfill.sync_events, ("klaviyo_events",), "windows", "0 * * * *",
           _groups("overview", "campaigns", "flows", "forms", "segments", "charts", "analytics",
                   "forecast", "metrics"),
           after=("metrics", "campaigns", "flows", "profiles"), refreshes=("aggregates", "facts")),
    Stream("reports", streams.sync_reports, ("klaviyo_reports",), "daily-quota", "0 3 * * *",
           _groups("campaigns", "flows", "forms", "segments"), after=("metrics",)),
)  # fmt: skip
STREAMS: tuple[str, ...] = tuple(s.name for s in REGISTRY)
_BY_NAME = {s.name: s for s in REGISTRY}


def stream(name: str) -> Stream:
    """Return the stream called `name`.

    Raises ValueError naming the known streams for any other name.
    """
    found = _BY_NAME.get(name)
    if found is None:
        raise ValueError(f"unknown stream {name!r}; choose one of: all, {', '.join(STREAMS)}")
    return found
