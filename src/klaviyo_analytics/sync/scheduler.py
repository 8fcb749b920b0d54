"""Run jobs on cron schedules (APScheduler); a job never runs twice at once, even across
processes, because each run holds a PostgreSQL advisory lock named after the job.

A failed run is recorded in `job_runs` and the scheduler goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from klaviyo_analytics.db.pool import Database
from klaviyo_analytics.db.repos.jobs import JobRunRepository
from klaviyo_analytics.errors import ConfigurationError, NotFoundError
from klaviyo_analytics.sync.registry import REGISTRY

logger = logging.getLogger(__name__)

_jobs = JobRunRepository()

# Every stream's own schedule (declared with the stream), then the jobs that are not streams.
DEFAULT_SCHEDULES: dict[str, str] = {
    **{s.name: s.schedule for s in REGISTRY},
    "recent-events": "30 */6 * * *",
    # Forecasts end training yesterday, so a day needs one fit; later runs find it current.
    "forecasts": "45 */6 * * *",
    "maintenance": "0 4 * * *",
    # After the hourly events sync and the nightly profiles sync (02:00).
    "clv": "40 3 * * *",
    "backup-hourly": "5 * * * *",
    "backup-daily": "10 0 * * *",
    "backup-weekly": "20 0 * * 1",
    "backup-monthly": "30 0 1 * *",
}


@dataclass(frozen=True)
class Job:
    """A named unit of work and the cron expression (in the scheduler's zone) that starts it."""

    name: str
    cron: str
    run: Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class JobOutcome:
    """How one run of a job ended: succeeded, failed or skipped (locked elsewhere)."""

    job: str
    status: str
    run_id: int
    detail: str | None = None


def parse_cron(name: str, expression: str, timezone: str) -> CronTrigger:
    """Return a trigger for a five-field cron expression.

    Raises ConfigurationError naming the job when the expression is invalid.
    """
    try:
        return CronTrigger.from_crontab(expression, timezone=timezone)
    except ValueError as exc:
        raise ConfigurationError(
            f"schedule for job {name!r} is not a valid cron expression: {expression!r} ({exc})"
        ) from None


class Scheduler:
    """Starts jobs on their schedules and on demand, one run of a job at a time."""

    def __init__(self, db: Database, jobs: Sequence[Job], *, timezone: str = "UTC") -> None:
        """Validate every schedule.

        Raises ConfigurationError for an invalid cron expression or a repeated job name.
        """
        self.db = db
        self.timezone = timezone
        self.jobs = {job.name: job for job in jobs}
        if len(self.jobs) != len(jobs):
            raise ConfigurationError("two jobs share a name")
        self._triggers = {job.name: parse_cron(job.name, job.cron, timezone) for job in jobs}
        self._scheduler: AsyncIOScheduler | None = None

    def start(self) -> None:
        """Start firing jobs on their schedules (inside a running event loop)."""
        scheduler = AsyncIOScheduler(timezone=self.timezone)
        for name, trigger in self._triggers.items():
            scheduler.add_job(
                self.run_job_now,
                trigger,
                args=[name],
                id=name,
                name=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=300,
            )
        scheduler.start()
        self._scheduler = scheduler

    def shutdown(self) -> None:
        """Stop firing jobs (a run in progress is left to finish by its caller)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def next_runs(self, now: datetime) -> list[tuple[str, str, datetime | None]]:
        """Return (job, cron, next fire time after `now`) for every job."""
        return [
            (name, self.jobs[name].cron, trigger.get_next_fire_time(None, now))
            for name, trigger in self._triggers.items()
        ]

    async def run_job_now(self, name: str) -> JobOutcome:
        """Run a job once, unless another process or task is running it (then it is skipped).

        Failures are recorded and returned, never raised, so the scheduler goes on.
        Raises NotFoundError for an unknown job name.
        """
        job = self.jobs.get(name)
        if job is None:
            raise NotFoundError(f"unknown job {name!r}; jobs are: {', '.join(sorted(self.jobs))}")
        async with self.db.connection() as lock_conn:
            await lock_conn.set_autocommit(True)
            if not await _jobs.try_lock(lock_conn, name):
                run_id = await self._record_start(
                    name, "skipped", "another run holds the job's lock"
                )
                logger.info("job %s skipped: already running elsewhere", name)
                return JobOutcome(name, "skipped", run_id, "another run holds the job's lock")
            try:
                run_id = await self._record_start(name, "running", None)
                status, detail = "succeeded", None
                try:
                    result = await job.run()
                    detail = _summary(result)
                except asyncio.CancelledError:
                    status, detail = "failed", "cancelled"
                    raise
                except Exception as exc:
                    status, detail = "failed", f"{type(exc).__name__}: {exc}"
                    logger.error("job %s failed: %s", name, detail)
                finally:
                    await asyncio.shield(self._record_end(run_id, status, detail))
                return JobOutcome(name, status, run_id, detail)
            finally:
                await _jobs.unlock(lock_conn, name)
                await lock_conn.set_autocommit(False)

    async def _record_start(self, job: str, status: str, detail: str | None) -> int:
        return await self.db.run(lambda conn: _jobs.start(conn, job, status, detail))

    async def _record_end(self, run_id: int, status: str, detail: str | None) -> None:
        await self.db.run(lambda conn: _jobs.finish(conn, run_id, status, detail))


def _summary(result: object) -> str | None:
    if result is None:
        return None
    text = repr(result)
    return text if len(text) <= 500 else text[:497] + "..."
