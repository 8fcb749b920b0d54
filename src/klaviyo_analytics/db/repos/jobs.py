"""The scheduler's bookkeeping: one row per job run, and the lock that keeps one run at a time."""

from __future__ import annotations

from klaviyo_analytics.db.repos.base import Conn

# The first key of the two-key advisory lock of scheduler jobs; the second is hashtext(job).
LOCK_CLASS = 72_615


class JobRunRepository:
    """`job_runs` rows and the per-job advisory lock."""

    async def try_lock(self, conn: Conn, job: str) -> bool:
        """Take the job's session-level lock on `conn` if no other session holds it."""
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(%s, hashtext(%s)) AS got", (LOCK_CLASS, job)
        )
        row = await cur.fetchone()
        return bool(row and row["got"])

    async def unlock(self, conn: Conn, job: str) -> None:
        """Release the job's lock taken on `conn`."""
        await conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", (LOCK_CLASS, job))

    async def start(self, conn: Conn, job: str, status: str, detail: str | None) -> int:
        """Record a run (a skipped one is finished at once); return its id."""
        cur = await conn.execute(
            "INSERT INTO job_runs (job, status, detail, finished_at)"
            " VALUES (%s, %s, %s, CASE WHEN %s = 'skipped' THEN now() END) RETURNING id",
            (job, status, detail, status),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def finish(self, conn: Conn, run_id: int, status: str, detail: str | None) -> None:
        """Record a run's end and outcome."""
        await conn.execute(
            "UPDATE job_runs SET status = %s, detail = %s, finished_at = now() WHERE id = %s",
            (status, detail, run_id),
        )
