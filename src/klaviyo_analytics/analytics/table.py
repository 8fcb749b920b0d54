"""A page of rows with the total, and the checks every sortable table applies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from psycopg import sql

from klaviyo_analytics.analytics.errors import InvalidParameterError

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
