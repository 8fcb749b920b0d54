"""A page of rows with the total, and the checks every sortable table applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from psycopg import sql

from klaviyo_analytics.analytics.errors import InvalidParameterError
from klaviyo_analytics.db.pool import Conn

T = TypeVar("T")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Table(Generic[T]):
    """One page of `rows`; `total` counts every row matching, on all pages."""

    rows: list[T]
    total: int


def check_page(limit: int, offset: int) -> None:
    """Raise InvalidParameterError unless 1 <= limit <= 1000 and offset >= 0."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidParameterError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise InvalidParameterError(f"offset must not be negative, got {offset}")


def order_by(sort: str, allowed: tuple[str, ...], descending: bool) -> sql.Composed:
    """Return `ORDER BY` terms for a whitelisted column, ties broken by id.

    Raises InvalidParameterError naming the allowed columns for any other.
    """
    if sort not in allowed:
        raise InvalidParameterError(
            f"cannot sort by {sort!r}; sort by one of: {', '.join(allowed)}"
        )
    return sql.SQL("{c} {d} NULLS LAST, id").format(
        c=sql.Identifier(sort), d=sql.SQL("DESC" if descending else "ASC")
    )


def search_pattern(search: str | None) -> str | None:
    """Return an ILIKE pattern matching names that contain `search` literally, or None.

    `%`, `_` and the escape character itself are escaped, so "50%" finds "50% off", not "500".
    """
    if search is None or not search.strip():
        return None
    escaped = search.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def fetch_page(
    conn: Conn,
    rows_sql: sql.Composable,
    params: dict[str, Any],
    *,
    sort: str,
    allowed: tuple[str, ...],
    descending: bool,
    limit: int,
    offset: int,
) -> tuple[list[dict[str, Any]], int]:
    """Return one page of the CTE `r` defined by `rows_sql`, in the asked order, and its total.

    Raises InvalidParameterError for a sort column outside `allowed`, or a bad page.
    """
    check_page(limit, offset)
    order = order_by(sort, allowed, descending)
    cur = await conn.execute(
        sql.SQL("WITH {rows} SELECT count(*) AS n FROM r").format(rows=rows_sql), params
    )
    counted = await cur.fetchone()
    cur = await conn.execute(
        sql.SQL(
            "WITH {rows} SELECT * FROM r ORDER BY {order} LIMIT %(limit)s OFFSET %(offset)s"
        ).format(rows=rows_sql, order=order),
        {**params, "limit": limit, "offset": offset},
    )
    return list(await cur.fetchall()), int(counted["n"]) if counted else 0
