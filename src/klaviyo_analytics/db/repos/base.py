"""A generic repository over one table whose rows are frozen dataclasses.

Repositories take a connection and never commit: the caller owns the transaction. Bulk writes
COPY the batch into a per-session staging table, then run one `INSERT ... ON CONFLICT` that
updates a row only when something in it differs, so re-writing a batch changes nothing. A
time-partitioned table's batch whose time range holds no stored row is copied straight in.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Generic, TypeVar

import orjson
from psycopg import AsyncConnection, sql
from psycopg.errors import UniqueViolation
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

Conn = AsyncConnection[DictRow]
R = TypeVar("R")


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} as JSON")


def dump_json(value: Any) -> bytes:
    """Serialise a value for a jsonb column (orjson: several times faster than json)."""
    return orjson.dumps(value, default=_exact)


def adapt(value: Any) -> Any:
    """Wrap JSON-shaped values so psycopg sends them as jsonb."""
    if isinstance(value, dict | list):
        return Jsonb(value, dumps=dump_json)
    return value


class Repository(Generic[R]):
    """Create, read, update, delete and bulk-upsert records of one table."""

    def __init__(
        self,
        table: str,
        record: type[R],
        key: Sequence[str],
        *,
        touched: str | None = "synced_at",
        skip_unchanged: bool = False,
        bounded_by: str | None = None,
        merge_order: Sequence[tuple[str, bool]] = (),
    ) -> None:
        """Describe the table; `touched` names the column set to now() when a row changes.

        `skip_unchanged=True` leaves staged rows equal to the stored ones out of the batch
        upsert altogether, so that they do not even reach ON CONFLICT: TimescaleDB decompresses
        the compressed batches an ON CONFLICT check touches, changed or not. `bounded_by` names
        the column a table is partitioned by (its time): the look-up of stored rows is then
        bounded by the batch's range in it, so that it reads only the partitions, chunks and
        index ranges the batch falls in.
        `merge_order` lists (column, descending) pairs the batch upsert writes rows in, so that
        concurrent batches lock what they touch in one order.
        Raises ValueError naming key, bound or order columns the record does not have, and
        order columns that may be None.
        """
        if not dataclasses.is_dataclass(record):
            raise TypeError(f"{record!r} is not a dataclass")
        self.table = table
        self.record = record
        self.columns: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(record))
        self.key: tuple[str, ...] = tuple(key)
        self.touched = touched
        self.skip_unchanged = skip_unchanged
        self.bounded_by = bounded_by
        self.merge_order = tuple(merge_order)
        missing = set(self.key) - set(self.columns)
        if missing:
            raise ValueError(f"key columns {sorted(missing)} are not fields of {record.__name__}")
        if bounded_by is not None and bounded_by not in self.columns:
            raise ValueError(f"bound column {bounded_by!r} is not a field of {record.__name__}")
        # With the bound column in the key, any stored row a batch's keys could meet lies in
        # the batch's range of it: a range that holds none can be copied straight in.
        self._direct = bounded_by is not None and bounded_by in self.key
        unordered = {c for c, _ in self.merge_order} - set(self.columns)
        if unordered:
            raise ValueError(
                f"order columns {sorted(unordered)} are not fields of {record.__name__}"
            )
        hints = {f.name: str(f.type) for f in dataclasses.fields(record)}
        optional = sorted(c for c, _ in self.merge_order if "None" in hints[c])
        if optional:
            raise ValueError(f"order columns {optional} of {record.__name__} may be None")
        self._times = frozenset(c for c, _ in self.merge_order if hints[c] == "datetime")
        self._ident = sql.Identifier(table)
        self._stage = sql.Identifier(f"_stage_{table}")
        # The batch path reads every record's fields through C-level getters and wraps only
        # the fields that can hold JSON (typed dict, list or Any): per-field Python calls were
        # a tenth of the event sync's CPU.
        self._all = operator.attrgetter(*self.columns)
        self._key_of = operator.attrgetter(*self.key)
        self._json_at = tuple(
            i for i, c in enumerate(self.columns)
            if any(word in hints[c] for word in ("dict", "list", "Any"))
        )  # fmt: skip

    # -- single records ----------------------------------------------------------------------

    async def get(self, conn: Conn, *key: Any) -> R | None:
        """Return the record with this key, or None."""
        cur = await conn.execute(
            sql.SQL("SELECT {cols} FROM {t} WHERE {where}").format(
                cols=self._cols(), t=self._ident, where=self._key_match()
            ),
            key,
        )
        row = await cur.fetchone()
        return self._to_record(row) if row is not None else None

    async def insert(self, conn: Conn, record: R) -> None:
        """Insert a new record.

        Raises psycopg.errors.UniqueViolation when the key exists.
        """
        await conn.execute(
            sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals})").format(
                t=self._ident,
                cols=self._cols(),
                vals=sql.SQL(", ").join(sql.Placeholder() * len(self.columns)),
            ),
            self._values(record),
        )

    async def update(self, conn: Conn, record: R) -> bool:
        """Replace the stored record with the same key; return False when there is none."""
        others = [c for c in self.columns if c not in self.key]
        cur = await conn.execute(
            sql.SQL("UPDATE {t} SET {sets} WHERE {where}").format(
                t=self._ident,
                sets=sql.SQL(", ").join(
                    sql.SQL("{} = %s").format(sql.Identifier(c)) for c in others
                ),
                where=self._key_match(),
            ),
            [adapt(getattr(record, c)) for c in others] + [getattr(record, c) for c in self.key],
        )
        return cur.rowcount > 0

    async def delete(self, conn: Conn, *key: Any) -> bool:
        """Delete the record with this key; return False when there was none."""
        cur = await conn.execute(
            sql.SQL("DELETE FROM {t} WHERE {where}").format(t=self._ident, where=self._key_match()),
            key,
        )
        return cur.rowcount > 0

    async def upsert(self, conn: Conn, record: R) -> bool:
        """Insert the record or update the stored one; return whether anything changed."""
        cur = await conn.execute(
            sql.SQL("INSERT INTO {t} ({cols}) VALUES ({vals}) {conflict}").format(
                t=self._ident,
                cols=self._cols(),
                vals=sql.SQL(", ").join(sql.Placeholder() * len(self.columns)),
                conflict=self._on_conflict(),
            ),
            self._values(record),
        )
        return cur.rowcount > 0

    # -- many records ------------------------------------------------------------------------

    async def upsert_many(self, conn: Conn, records: Iterable[R]) -> int:
        """Write a batch; return how many rows were inserted or changed.

        Duplicate keys within the batch are allowed: the last one wins. In a table with a
        bound column in its key, a batch whose range in it holds no stored row (a backfill's
        pages) is copied straight in; any other batch goes through COPY into a stage and one
        upsert that skips unchanged rows.
        """
        # One row per key, the last one winning: ON CONFLICT cannot touch a row twice.
        latest = list({self._key_of(r): r for r in records}.values())
        if not latest:
            return 0
        await self.before_write(conn, latest)
        bounds = self._bounds(latest)
        # Never part straight in and part merged: each statement takes its locks in merge
        # order, but two statements of one transaction would not (on TimescaleDB's compressed
        # chunks a re-sync then deadlocked with itself).
        if self._direct and not await self._holds_any(conn, bounds):
            if await self._insert_new(conn, latest):
                return len(latest)
        return await self._merge(conn, latest, bounds)

    async def before_write(self, conn: Conn, records: Sequence[R]) -> None:
        """Prepare what a batch's rows refer to, before it is written (a hook for subclasses)."""

    def _bounds(self, rows: Sequence[R]) -> tuple[Any, ...]:
        """Return the rows' lowest and highest value in the bound column, or () without one."""
        if self.bounded_by is None:
            return ()
        at = operator.attrgetter(self.bounded_by)
        return (min(map(at, rows)), max(map(at, rows)))

    async def _holds_any(self, conn: Conn, bounds: tuple[Any, ...]) -> bool:
        """Say whether any stored row lies in the bound column's range [low, high]."""
        cur = await conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {t} WHERE {c} BETWEEN %s AND %s) AS held").format(
                t=self._ident, c=sql.Identifier(self.bounded_by or "")
            ),
            bounds,
        )
        row = await cur.fetchone()
        return bool(row and row["held"])

    async def _insert_new(self, conn: Conn, rows: Sequence[R]) -> bool:
        """COPY a batch whose range holds no stored row straight into the table, in a
        savepoint; return False, having written nothing, when a concurrent writer stored one
        of its keys since `_holds_any` looked.

        Nothing stored in the range means nothing can conflict (the bound column is part of
        the key), so the stage, its COPY and the upsert's look-ups are saved: about a third of
        the database's CPU per event of a backfill (issue 17).
        """
        try:
            async with conn.transaction():
                await self._copy(conn, self._ident, self._in_merge_order(rows))
        except UniqueViolation:
            return False
        return True

    async def _merge(self, conn: Conn, rows: Sequence[R], bounds: tuple[Any, ...]) -> int:
        """COPY rows into the stage, then upsert them in one statement; return how many rows
        were inserted or changed. `bounds` bound the look-up of unchanged rows."""
        # One round trip. The stage empties itself at commit; DELETE (not TRUNCATE, which
        # swaps the table's file each time) clears what an earlier batch of this same
        # transaction left, and costs nothing on the usual empty stage.
        await conn.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {s} (LIKE {t} INCLUDING DEFAULTS)"
                " ON COMMIT DELETE ROWS; DELETE FROM {s}"
            ).format(s=self._stage, t=self._ident)
        )
        await self._copy(conn, self._stage, rows)
        cur = await conn.execute(
            sql.SQL(
                "INSERT INTO {t} ({cols}) SELECT {cols} FROM {s} {where} {order} {conflict}"
            ).format(
                t=self._ident,
                cols=self._cols(),
                s=self._stage,
                where=self._unchanged_filter(),
                order=self._merge_order(),
                conflict=self._on_conflict(),
            ),
            (bounds or None) if self.skip_unchanged else None,
        )
        return cur.rowcount

    async def _copy(self, conn: Conn, target: sql.Identifier, rows: Iterable[R]) -> None:
        """COPY rows into `target`: the table itself or its stage."""
        async with conn.cursor().copy(
            sql.SQL("COPY {t} ({cols}) FROM STDIN").format(t=target, cols=self._cols())
        ) as copy:
            for record in rows:
                await copy.write_row(self._row(record))

    def _in_merge_order(self, rows: Sequence[R]) -> list[R]:
        """Return rows sorted as `_merge_order` sorts them in SQL, so that concurrent writers
        lock the keys they share in one order."""
        ordered = list(rows)
        # Stable sorts, the last column first. Times are compared as POSIX seconds: comparing
        # aware datetimes asks each for its UTC offset, and sorted a page three times slower.
        for column, descending in reversed(self.merge_order):
            at = operator.attrgetter(column)
            key = (lambda r, at=at: at(r).timestamp()) if column in self._times else at
            ordered.sort(key=key, reverse=descending)
        return ordered

    async def count(self, conn: Conn) -> int:
        """Return the number of rows in the table."""
        cur = await conn.execute(sql.SQL("SELECT count(*) AS n FROM {t}").format(t=self._ident))
        row = await cur.fetchone()
        return int(row["n"]) if row else 0

    async def page(
        self,
        conn: Conn,
        *,
        limit: int = 100,
        offset: int = 0,
        order_by: str | None = None,
        descending: bool = False,
    ) -> list[R]:
        """Return a page of records ordered by a column (the key by default).

        Raises ValueError for a column the table does not have.
        """
        column = order_by or self.key[0]
        if column not in self.columns:
            raise ValueError(f"{self.table} has no column {column!r}")
        cur = await conn.execute(
            sql.SQL(
                "SELECT {cols} FROM {t} ORDER BY {c} {d} NULLS LAST, {key} LIMIT %s OFFSET %s"
            ).format(
                cols=self._cols(),
                t=self._ident,
                c=sql.Identifier(column),
                d=sql.SQL("DESC" if descending else "ASC"),
                key=sql.SQL(", ").join(map(sql.Identifier, self.key)),
            ),
            (limit, offset),
        )
        return [self._to_record(r) for r in await cur.fetchall()]

    async def find_by(self, conn: Conn, column: str, value: Any, *, limit: int = 100) -> list[R]:
        """Return records whose `column` equals `value`.

        Raises ValueError for a column the table does not have.
        """
        if column not in self.columns:
            raise ValueError(f"{self.table} has no column {column!r}")
        cur = await conn.execute(
            sql.SQL("SELECT {cols} FROM {t} WHERE {c} = %s ORDER BY {key} LIMIT %s").format(
                cols=self._cols(),
                t=self._ident,
                c=sql.Identifier(column),
                key=sql.SQL(", ").join(map(sql.Identifier, self.key)),
            ),
            (value, limit),
        )
        return [self._to_record(r) for r in await cur.fetchall()]

    # -- helpers -----------------------------------------------------------------------------

    def _cols(self) -> sql.Composed:
        return sql.SQL(", ").join(map(sql.Identifier, self.columns))

    def _key_match(self) -> sql.Composed:
        return sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in self.key)

    def _merge_order(self) -> sql.Composable:
        if not self.merge_order:
            return sql.SQL("")
        return sql.SQL("ORDER BY {}").format(
            sql.SQL(", ").join(
                sql.SQL("{} DESC" if descending else "{}").format(sql.Identifier(c))
                for c, descending in self.merge_order
            )
        )

    def _unchanged_filter(self) -> sql.Composable:
        if not self.skip_unchanged:
            return sql.SQL("")
        others = [c for c in self.columns if c not in self.key]
        stored = sql.SQL(", ").join(sql.SQL("o.{}").format(sql.Identifier(c)) for c in others)
        staged = sql.SQL(", ").join(
            sql.SQL("{s}.{c}").format(s=self._stage, c=sql.Identifier(c)) for c in others
        )
        # Bounded by the batch's range as literals, the look-up plans only the partitions (or
        # TimescaleDB chunks) the batch falls in and reads their rows in that range through an
        # index. Unbounded, the planner hashed every partition's rows whole for every batch (a
        # hash anti-join over sequential scans): a backfill's cost grew with the square of its
        # size (issue 17).
        bounded: sql.Composable = sql.SQL("")
        if self.bounded_by is not None:
            column = sql.Identifier(self.bounded_by)
            bounded = sql.SQL(" AND o.{c} BETWEEN %s AND %s").format(c=column)
        return sql.SQL(
            "WHERE NOT EXISTS (SELECT 1 FROM {t} o WHERE {keys}{bounded}"
            " AND ({stored}) IS NOT DISTINCT FROM ({staged}))"
        ).format(
            bounded=bounded,
            t=self._ident,
            keys=sql.SQL(" AND ").join(
                sql.SQL("o.{c} = {s}.{c}").format(c=sql.Identifier(c), s=self._stage)
                for c in self.key
            ),
            stored=stored,
            staged=staged,
        )

    def _on_conflict(self) -> sql.Composed:
        others = [c for c in self.columns if c not in self.key]
        if not others:
            return sql.SQL("ON CONFLICT ({key}) DO NOTHING").format(
                key=sql.SQL(", ").join(map(sql.Identifier, self.key))
            )
        sets = [sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others]
        if self.touched is not None:
            sets.append(sql.SQL("{c} = now()").format(c=sql.Identifier(self.touched)))
        current = sql.SQL(", ").join(
            sql.SQL("{t}.{c}").format(t=self._ident, c=sql.Identifier(c)) for c in others
        )
        incoming = sql.SQL(", ").join(
            sql.SQL("EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in others
        )
        return sql.SQL(
            "ON CONFLICT ({key}) DO UPDATE SET {sets} WHERE ({current}) IS DISTINCT FROM ({incoming})"
        ).format(
            key=sql.SQL(", ").join(map(sql.Identifier, self.key)),
            sets=sql.SQL(", ").join(sets),
            current=current,
            incoming=incoming,
        )

    def _values(self, record: R) -> list[Any]:
        return [adapt(getattr(record, c)) for c in self.columns]

    def _row(self, record: R) -> list[Any]:
        """Return a record's values for a text-format `COPY` into the table or its stage: JSON
        values as their text, which the column's jsonb input parses (what a `Jsonb` wrapper
        sends, without one wrapper and two Python calls of psycopg's dumper per value: a
        fifth of the formatting of an event page)."""
        values = self._all(record)
        row = list(values) if len(self.columns) > 1 else [values]
        for i in self._json_at:
            value = row[i]
            if isinstance(value, dict | list):
                row[i] = dump_json(value).decode()
        return row

    def _to_record(self, row: Mapping[str, Any]) -> R:
        return self.record(**{c: row[c] for c in self.columns})
