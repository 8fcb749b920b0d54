"""`klaviyo-analytics scheduler`: run the sync, maintenance and backup jobs on their schedules."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from klaviyo_analytics.analytics.compute import Offload, Workers, in_thread
from klaviyo_analytics.analytics.periods import local_today, store_timezone
from klaviyo_analytics.backup.dump import create_backup
from klaviyo_analytics.backup.rotate import rotate
from klaviyo_analytics.cli.backup import policy_of
from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.cli.runtime import tune_garbage_collection
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db import maintenance
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.sync.registry import STREAMS
from klaviyo_analytics.sync.runner import DataSyncService
from klaviyo_analytics.sync.scheduler import DEFAULT_SCHEDULES, Job, Scheduler
from klaviyo_analytics.wiring import (
    check_reachable,
    database_server,
    klaviyo_client,
    open_database,
    sync_options,
    sync_service,
)

console = Console()


def schedules(settings: Settings) -> dict[str, str]:
    """Return every job's cron expression: the defaults with SCHEDULES' overrides applied.

    Raises ConfigurationError for an override naming an unknown job.
    """
    unknown = set(settings.schedules) - set(DEFAULT_SCHEDULES)
    if unknown:
        raise ConfigurationError(
            f"SCHEDULES names unknown jobs {sorted(unknown)}; jobs are: {', '.join(DEFAULT_SCHEDULES)}"
        )
    return {**DEFAULT_SCHEDULES, **settings.schedules}


def build_jobs(
    settings: Settings,
    conninfo: str,
    db: Database,
    service: DataSyncService,
    offload: Offload = in_thread,
) -> list[Job]:
    """Return the jobs: one per sync stream, recent events, forecasts, CLV, maintenance and
    each backup kind. Forecast and CLV fits run through `offload` (the scheduler's worker
    processes)."""
    crons = schedules(settings)
    rules = maintenance.retention_rules(
        raw_responses_days=settings.retention_raw_responses_days,
        events_months=settings.retention_events_months,
        aggregates_months=settings.retention_aggregates_months,
        predictions_months=settings.retention_predictions_months,
    )

    def stream(name: str) -> Job:
        async def run() -> str:
            results = await service.run_stream(name)
            return "; ".join(
                f"{r.stream}: {r.fetched:,} records, {sum(r.rows.values()):,} rows written"
                for r in results
            )

        return Job(name, crons[name], run)

    async def backup(kind: str) -> object:
        result = await asyncio.to_thread(
            create_backup, conninfo=conninfo, backup_dir=settings.backup_path, kind=kind
        )
        await asyncio.to_thread(rotate, settings.backup_path, policy=policy_of(settings))
        return result.info.path.name

    async def forecasts() -> str:
        # Imported here: statsmodels takes ~1.8 s of CPU to import, which every CLI command
        # (each `sync` among them) would otherwise pay at start.
        from klaviyo_analytics.analytics import forecast

        tz = await db.run(lambda c: store_timezone(c, settings.account_timezone), readonly=True)
        today = local_today(tz, datetime.now(UTC))
        outcome = await db.run(
            lambda c: forecast.refresh_forecasts(c, tz=tz, today=today, offload=offload)
        )
        return (
            f"{outcome.fitted} fitted, {outcome.current} already current, "
            f"{len(outcome.failed)} not possible"
            + "".join(f"; {key}: {why}" for key, why in outcome.failed.items())
        )

    jobs = [stream(n) for n in STREAMS]
    jobs.append(
        Job("recent-events", crons["recent-events"], lambda: service.sync_recent_events(24))
    )
    jobs.append(Job("forecasts", crons["forecasts"], forecasts))
    jobs.append(
        Job(
            "maintenance",
            crons["maintenance"],
            lambda: maintenance.run_maintenance(conninfo, rules),
        )
    )

    async def fit_clv() -> str:
        from klaviyo_analytics.analytics import clv  # heavy, as forecast above

        zone = await db.run(lambda c: store_timezone(c, settings.account_timezone), readonly=True)
        return await clv.fit_and_store(db.run, timezone=zone, now=service.clock(), offload=offload)

    jobs.append(Job("clv", crons["clv"], fit_clv))
    for kind in ("hourly", "daily", "weekly", "monthly"):
        jobs.append(Job(f"backup-{kind}", crons[f"backup-{kind}"], functools.partial(backup, kind)))
    return jobs


def scheduler_command(
    run_now: Annotated[
        str | None,
        typer.Option("--run-now", help="Run this one job now (respecting its lock) and exit."),
    ] = None,
    list_jobs: Annotated[
        bool, typer.Option("--list", help="Show the jobs and their next run times, then exit.")
    ] = False,
) -> None:
    """Run the scheduled jobs until stopped (Ctrl-C or SIGTERM).

    Schedules are cron expressions; override them with SCHEDULES='{"events": "*/30 * * * *"}'.
    """
    settings = load()
    tune_garbage_collection()
    with fail_cleanly():
        schedules(settings)
        with database_server(settings) as conninfo:
            asyncio.run(check_reachable(settings, conninfo))
            asyncio.run(migrate(conninfo))
            code = asyncio.run(_main(settings, conninfo, run_now=run_now, list_jobs=list_jobs))
    if code:
        raise typer.Exit(code)


async def _main(settings: Settings, conninfo: str, *, run_now: str | None, list_jobs: bool) -> int:
    async with (
        open_database(settings, conninfo) as db,
        klaviyo_client(settings) as client,
        Workers(settings.analysis_workers) as workers,
    ):
        service = sync_service(db, client, options=sync_options(settings))
        scheduler = Scheduler(
            db,
            build_jobs(settings, conninfo, db, service, workers),
            timezone=settings.scheduler_timezone,
        )
        if list_jobs:
            table = Table("job", "schedule", "next run")
            for name, cron, when in scheduler.next_runs(datetime.now(UTC)):
                table.add_row(name, cron, when.isoformat() if when else "-")
            console.print(table)
            return 0
        if run_now is not None:
            outcome = await scheduler.run_job_now(run_now)
            console.print(
                f"job {outcome.job}: {outcome.status}"
                + (f" ({outcome.detail})" if outcome.detail else "")
            )
            return 1 if outcome.status == "failed" else 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        scheduler.start()
        console.print(f"scheduler running {len(scheduler.jobs)} jobs; Ctrl-C to stop")
        try:
            await stop.wait()
        finally:
            scheduler.shutdown()
        return 0
