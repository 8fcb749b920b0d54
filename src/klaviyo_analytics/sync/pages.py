"""Store one fetched page: its rows, its quarantined records and, when asked, its raw body.

Every stream writes its pages this way, inside the transaction that also moves its state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from klaviyo_analytics import klaviyo as k
from klaviyo_analytics.db.pool import Conn
from klaviyo_analytics.db.repos.base import Repository
from klaviyo_analytics.db.repos.sync_state import SyncRunRepository
from klaviyo_analytics.sync.progress import RunCounters

_runs = SyncRunRepository()

# (table, repository, records) — the rows of one page that go to one table.
Rows = tuple[str, Repository[Any], Sequence[Any]]


async def store_page(
    conn: Conn,
    counters: RunCounters,
    page: k.Page[Any],
    rows: Sequence[Rows],
    *,
    archive_as: str | None = None,
) -> dict[str, int]:
    """Upsert each table's rows, quarantine the page's invalid records and archive its body
    under `archive_as` (when given); return the rows changed per table.

    Raises ValueError when asked to archive a page fetched without its body.
    """
    changed = {table: await repo.upsert_many(conn, records) if records else 0
               for table, repo, records in rows}  # fmt: skip
    for bad in page.invalid:
        await counters.quarantine(conn, counters.stream, bad)
    if archive_as is not None:
        if page.raw is None:
            raise ValueError(f"cannot archive {page.url}: the page was fetched without its body")
        await _runs.archive(conn, endpoint=archive_as, url=page.url, body=page.raw)
    return changed
