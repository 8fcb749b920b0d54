"""Event columns: the numpy representation of a set of generated events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SEQ_BITS = 26
KIND_NONE, KIND_CAMPAIGN, KIND_FLOW = 0, 1, 2
COLUMNS = ("ts", "id", "metric", "profile", "kind", "source", "value", "attr", "aux")
_COLUMNS = COLUMNS


@dataclass(frozen=True)
class EventColumns:
    """Columns of a set of events (one entry per event, same length everywhere).

    `kind`/`source` name the campaign (message index) or flow message an event belongs to or is
    attributed to; `attr` is the id of the event an order is attributed to (a refund's original
    order), or -1; `value` is in cents; `aux` is a product or form index, or -1.
    """

    ts: np.ndarray
    id: np.ndarray
    metric: np.ndarray
    profile: np.ndarray
    kind: np.ndarray
    source: np.ndarray
    value: np.ndarray
    attr: np.ndarray
    aux: np.ndarray

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, index: np.ndarray | slice) -> EventColumns:
        """Return the events selected by a mask, index array or slice."""
        return EventColumns(*(getattr(self, name)[index] for name in _COLUMNS))

    @staticmethod
    def concat(parts: list[EventColumns]) -> EventColumns:
        """Join several column sets (in the given order)."""
        if not parts:
            return _EMPTY
        return EventColumns(
            *(np.concatenate([getattr(p, name) for p in parts]) for name in _COLUMNS)
        )


_EMPTY = EventColumns(
    *(np.empty(0, dtype=np.int64 if n in ("ts", "id", "value", "attr") else np.int32)
      for n in _COLUMNS)
)  # fmt: skip


class _Builder:
    """Collect the events of one origin day, handing out their ids as they are added."""

    def __init__(self, origin_day: int) -> None:
        self.base = origin_day << SEQ_BITS
        self.count = 0
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(
        self,
        ts: np.ndarray,
        metric: int,
        profile: np.ndarray,
        kind: int | np.ndarray = KIND_NONE,
        source: int | np.ndarray = -1,
        value: np.ndarray | int = 0,
        attr: np.ndarray | int = -1,
        aux: np.ndarray | int = -1,
    ) -> np.ndarray:
        n = int(ts.shape[0])
        ids = np.arange(self.base + self.count, self.base + self.count + n, dtype=np.int64)
        self.count += n
        if n:

            def full(v: np.ndarray | int, dtype: type) -> np.ndarray:
                if isinstance(v, np.ndarray):
                    return v.astype(dtype, copy=False)
                return np.full(n, v, dtype=dtype)

            self.parts.append(
                (
                    ts.astype(np.int64, copy=False),
                    ids,
                    np.full(n, metric, dtype=np.int32),
                    full(profile, np.int32),
                    full(kind, np.int32),
                    full(source, np.int32),
                    full(value, np.int64),
                    full(attr, np.int64),
                    full(aux, np.int32),
                )
            )
        return ids

    def build(self) -> EventColumns:
        if not self.parts:
            return _EMPTY
        return EventColumns(*(np.concatenate(col) for col in zip(*self.parts, strict=True)))
