"""Prometheus metrics of one app, in a registry of its own (never the global one).

Counters that the process sees (HTTP requests, query durations, slow queries) are updated as
things happen; figures that live elsewhere (the pool, sync history in `sync_runs`, backups in
BACKUP_DIR, table sizes) are read when /metrics is scraped, table sizes at most every few
minutes since they cost a catalogue scan.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from klaviyo_analytics.backup.metadata import BackupInfo, BackupStats, backup_stats, latest_backup
from klaviyo_analytics.db import maintenance
from klaviyo_analytics.db.maintenance import RelationSize
from klaviyo_analytics.db.pool import Database, PoolMetrics
from klaviyo_analytics.db.repos.operations import SyncTotals, sync_totals
from klaviyo_analytics.errors import KlaviyoAnalyticsError

logger = logging.getLogger(__name__)

NS = "klaviyo_analytics"
SIZES_EVERY_S = 300.0
# Sync totals are read at most this often, so a flood of scrapes costs no database work.
SYNCS_EVERY_S = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUERY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0)


@dataclass
class Snapshot:
    """Figures read at scrape time."""

    pool: PoolMetrics | None = None
    syncs: list[SyncTotals] = field(default_factory=list)
    active_syncs: int = 0
    backup: BackupStats = field(default_factory=BackupStats)
    latest_backup: BackupInfo | None = None
    sizes: list[RelationSize] = field(default_factory=list)
    cache_hits: int = 0
    cache_misses: int = 0


class _SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.snapshot = Snapshot()

    def collect(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> Iterator[Metric]:
        s = self.snapshot
        if s.pool is not None:
            for name, value, doc in (
                ("size", s.pool.size, "open connections"),
                ("max_size", s.pool.max_size, "the pool's maximum size"),
                ("idle", s.pool.idle, "idle connections"),
                ("in_use", s.pool.in_use, "connections lent out"),
                ("waiting", s.pool.waiting, "clients waiting for a connection"),
                ("utilisation_percent", s.pool.utilisation_pct, "connections in use, % of max"),
                ("oldest_connection_age_seconds", s.pool.oldest_connection_age_s, "age"),
            ):
                yield GaugeMetricFamily(f"{NS}_db_pool_{name}", f"Pool: {doc}.", value=value)
            for name, value, doc in (
                (
                    "acquire_timeouts",
                    s.pool.acquire_timeouts,
                    "waits for a connection that timed out",
                ),
                ("query_errors", s.pool.query_errors, "statements that failed"),
                (
                    "statement_timeouts",
                    s.pool.statement_timeouts,
                    "statements cancelled by timeout",
                ),
                ("retries", s.pool.retries, "transactions retried after a transient error"),
                ("connections_lost", s.pool.connections_lost, "connections lost"),
            ):
                yield CounterMetricFamily(f"{NS}_db_pool_{name}", f"Pool: {doc}.", value=value)
        runs = CounterMetricFamily(
            f"{NS}_sync_runs", "Sync runs by stream and outcome.", labels=["stream", "status"]
        )
        records = CounterMetricFamily(
            f"{NS}_sync_records", "Rows written by sync runs.", labels=["stream"]
        )
        errors = CounterMetricFamily(
            f"{NS}_sync_errors", "Failed Klaviyo calls during syncs.", labels=["stream"]
        )
        limited = CounterMetricFamily(
            f"{NS}_sync_rate_limited", "Klaviyo 429 answers during syncs.", labels=["stream"]
        )
        calls = CounterMetricFamily(
            f"{NS}_sync_api_calls", "Klaviyo calls made by syncs.", labels=["stream"]
        )
        per_stream: dict[str, list[int]] = {}
        for t in s.syncs:
            runs.add_metric([t.stream, t.status], t.runs)
            acc = per_stream.setdefault(t.stream, [0, 0, 0, 0])
            acc[0] += t.records
            acc[1] += t.errors
            acc[2] += t.rate_limited
            acc[3] += t.api_calls
        for stream, (rec, err, lim, api) in sorted(per_stream.items()):
            records.add_metric([stream], rec)
            errors.add_metric([stream], err)
            limited.add_metric([stream], lim)
            calls.add_metric([stream], api)
        yield from (runs, records, errors, limited, calls)
        yield GaugeMetricFamily(f"{NS}_sync_active", "Syncs running now.", value=s.active_syncs)
        b = s.backup
        yield CounterMetricFamily(f"{NS}_backup_successes", "Backups made.", value=b.successes)
        yield CounterMetricFamily(f"{NS}_backup_failures", "Backups that failed.", value=b.failures)
        if b.last_success_at is not None:
            yield GaugeMetricFamily(
                f"{NS}_backup_last_success_timestamp_seconds",
                "When the last backup succeeded (Unix time).",
                value=b.last_success_at.timestamp(),
            )
        if b.last_duration_s is not None:
            yield GaugeMetricFamily(
                f"{NS}_backup_last_duration_seconds",
                "How long the last backup took.",
                value=b.last_duration_s,
            )
        if s.latest_backup is not None:
            yield GaugeMetricFamily(
                f"{NS}_backup_last_size_bytes",
                "Size of the newest backup file.",
                value=s.latest_backup.size_bytes,
            )
        sizes = GaugeMetricFamily(
            f"{NS}_relation_size_bytes",
            "On-disk size of tables and indexes.",
            labels=["relation", "kind"],
        )
        for r in s.sizes:
            sizes.add_metric([r.name, r.kind], r.bytes)
        yield sizes
        yield CounterMetricFamily(
            f"{NS}_cache_hits", "Answers served from the cache.", value=s.cache_hits
        )
        yield CounterMetricFamily(
            f"{NS}_cache_misses", "Cache lookups that missed.", value=s.cache_misses
        )


class ApiMetrics:
    """The metrics of one app, rendered as Prometheus text by `render`."""

    def __init__(
        self, *, slow_query_s: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Create a registry of this app's own."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.slow_query_s = slow_query_s
        self.clock = clock
        self.http_requests = Counter(
            f"{NS}_http_requests",
            "HTTP requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            f"{NS}_http_request_duration_seconds",
            "HTTP request duration by method and route template.",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=self.registry,
        )
        self.query_duration = Histogram(
            f"{NS}_db_query_duration_seconds",
            "Statement durations by outcome.",
            ["outcome"],
            buckets=QUERY_BUCKETS,
            registry=self.registry,
        )
        self.slow_queries = Counter(
            f"{NS}_db_slow_queries",
            "Statements slower than DB_SLOW_QUERY_MS.",
            registry=self.registry,
        )
        self._snapshot = _SnapshotCollector()
        self.registry.register(self._snapshot)
        self._sizes: list[RelationSize] = []
        self._sizes_at: float | None = None
        self._syncs: list[SyncTotals] = []
        self._syncs_at: float | None = None
        self.database_reads = 0

    def observe_query(self, seconds: float, failed: bool) -> None:
        """Record one statement (the Database.on_query hook)."""
        self.query_duration.labels("error" if failed else "ok").observe(seconds)
        if seconds >= self.slow_query_s:
            self.slow_queries.inc()

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one HTTP request."""
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    async def render(
        self,
        db: Database,
        *,
        backup_dir: Path,
        active_syncs: int = 0,
        cache_hits: int = 0,
        cache_misses: int = 0,
    ) -> bytes:
        """Read the scrape-time figures and return the exposition text.

        A figure that cannot be read (database down, backup folder unreadable) is left out and
        logged; the scrape itself still answers.
        """
        snap = Snapshot(active_syncs=active_syncs, cache_hits=cache_hits, cache_misses=cache_misses)
        snap.pool = db.metrics()
        try:
            snap.syncs = await self._sync_totals(db)
            snap.sizes = await self._relation_sizes(db)
        except KlaviyoAnalyticsError as exc:
            logger.warning("metrics: database figures unavailable: %s", exc)
        try:
            snap.backup, snap.latest_backup = await asyncio.to_thread(_backups, backup_dir)
        except (KlaviyoAnalyticsError, OSError) as exc:
            logger.warning("metrics: backup figures unavailable: %s", exc)
        self._snapshot.snapshot = snap
        return generate_latest(self.registry)

    async def _sync_totals(self, db: Database) -> list[SyncTotals]:
        now = self.clock()
        if self._syncs_at is None or now - self._syncs_at >= SYNCS_EVERY_S:
            # Marked first: scrapes arriving during the read reuse the previous figures.
            self._syncs_at = now
            self.database_reads += 1
            self._syncs = await db.run(sync_totals, readonly=True)
        return self._syncs

    async def _relation_sizes(self, db: Database) -> list[RelationSize]:
        now = self.clock()
        if self._sizes_at is None or now - self._sizes_at >= SIZES_EVERY_S:
            self._sizes_at = now
            self.database_reads += 1
            self._sizes = await db.run(maintenance.relation_sizes, readonly=True)
        return self._sizes


def _backups(backup_dir: Path) -> tuple[BackupStats, BackupInfo | None]:
    return backup_stats(backup_dir), latest_backup(backup_dir)
