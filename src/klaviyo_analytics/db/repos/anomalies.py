"""Flagged anomalous days (`analytics_anomalies`), one row per metric, measure and local date."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from klaviyo_analytics.db.repos.base import Conn


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    """One flagged day."""

    metric_id: str
    measure: str
    date: date
    observed: float
    expected: float
    score: float
    direction: str
    threshold: float


class AnomalyRepository:
    """Replaces and reads the anomalies of a metric's measure."""

    async def replace(
        self,
        conn: Conn,
        metric_id: str,
        measure: str,
        first: date,
        last: date,
        rows: Sequence[AnomalyRow],
    ) -> None:
        """Make the stored anomalies of [first, last] exactly `rows` (upserting, deleting the rest)."""
        await conn.execute(
            "DELETE FROM analytics_anomalies WHERE metric_id = %s AND measure = %s"
            " AND date BETWEEN %s AND %s AND NOT (date = ANY(%s::date[]))",
            (metric_id, measure, first, last, [r.date for r in rows]),
        )
        if not rows:
            return
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO analytics_anomalies (metric_id, measure, date, observed, expected,"
                " score, direction, threshold) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (metric_id, measure, date) DO UPDATE SET observed = EXCLUDED.observed,"
                " expected = EXCLUDED.expected, score = EXCLUDED.score,"
                " direction = EXCLUDED.direction, threshold = EXCLUDED.threshold,"
                " method = EXCLUDED.method, detected_at = now()",
                [
                    (
                        r.metric_id,
                        r.measure,
                        r.date,
                        r.observed,
                        r.expected,
                        r.score,
                        r.direction,
                        r.threshold,
                    )
                    for r in rows
                ],
            )

    async def list(
        self, conn: Conn, metric_id: str, measure: str, first: date, last: date
    ) -> list[AnomalyRow]:
        """Return the stored anomalies of [first, last], oldest first."""
        cur = await conn.execute(
            "SELECT metric_id, measure, date, observed, expected, score, direction, threshold"
            " FROM analytics_anomalies WHERE metric_id = %s AND measure = %s"
            " AND date BETWEEN %s AND %s ORDER BY date",
            (metric_id, measure, first, last),
        )
        return [
            AnomalyRow(
                r["metric_id"],
                r["measure"],
                r["date"],
                float(r["observed"]),
                float(r["expected"]),
                float(r["score"]),
                r["direction"],
                float(r["threshold"]),
            )
            for r in await cur.fetchall()
        ]
