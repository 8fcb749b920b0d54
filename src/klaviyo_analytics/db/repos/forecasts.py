"""Forecast runs: the fitted model, its daily predictions and the backtest scores of each candidate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from psycopg.types.json import Jsonb

from klaviyo_analytics.db.repos.base import Conn


@dataclass(frozen=True, slots=True)
class PredictionRow:
    """One predicted day with its interval."""

    date: date
    predicted: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One candidate model's backtest scores."""

    model_name: str
    folds: int
    mape: float | None
    rmse: float
    mae: float
    coverage: float


@dataclass(frozen=True, slots=True)
class StoredForecast:
    """A stored model with its predictions (cut to the asked horizon) and backtest scores."""

    model_id: int
    model_name: str
    parameters: dict[str, Any]
    train_start: date
    train_end: date
    predictions: list[PredictionRow]
    scores: list[ScoreRow]


@dataclass(frozen=True, slots=True)
class ForecastRequest:
    """The options a stored forecast was fitted for (what a refresh fits again)."""

    series_key: str
    requested: dict[str, Any]
    horizon_days: int
    level: float


class ForecastRepository:
    """Writes and reads `forecast_models`, `forecast_predictions` and `model_performance`."""

    async def save_model(
        self,
        conn: Conn,
        *,
        series_key: str,
        model_name: str,
        parameters: dict[str, Any],
        train_start: date,
        train_end: date,
        horizon_days: int,
    ) -> int:
        """Record a fitted model and return its id."""
        cur = await conn.execute(
            "INSERT INTO forecast_models (series_key, model_name, parameters, train_start,"
            " train_end, horizon_days) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (series_key, model_name, Jsonb(parameters), train_start, train_end, horizon_days),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["id"])

    async def save_predictions(
        self, conn: Conn, model_id: int, rows: Sequence[PredictionRow], *, level: float
    ) -> None:
        """Store a model's predictions (one row per day)."""
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO forecast_predictions (model_id, date, predicted, lower_bound,"
                " upper_bound, level) VALUES (%s, %s, %s, %s, %s, %s)",
                [(model_id, r.date, r.predicted, r.lower, r.upper, level) for r in rows],
            )

    async def save_scores(
        self, conn: Conn, model_id: int, series_key: str, scores: Sequence[ScoreRow]
    ) -> None:
        """Store the backtest scores of every candidate evaluated for the run of `model_id`."""
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO model_performance (model_id, series_key, model_name, folds, mape,"
                " rmse, mae, coverage) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [
                    (model_id, series_key, s.model_name, s.folds, s.mape, s.rmse, s.mae, s.coverage)
                    for s in scores
                ],
            )

    async def predictions(self, conn: Conn, model_id: int) -> list[PredictionRow]:
        """Return a stored model's predictions, oldest day first."""
        cur = await conn.execute(
            "SELECT date, predicted, lower_bound, upper_bound FROM forecast_predictions"
            " WHERE model_id = %s ORDER BY date",
            (model_id,),
        )
        return [
            PredictionRow(
                r["date"], float(r["predicted"]), float(r["lower_bound"]), float(r["upper_bound"])
            )
            for r in await cur.fetchall()
        ]

    async def recent_requests(self, conn: Conn, *, trained_since: date) -> list[ForecastRequest]:
        """Return each distinct set of options a forecast was stored for since `trained_since`.

        Per series, requested options and level, the largest horizon asked for.
        """
        cur = await conn.execute(
            "SELECT m.series_key, m.parameters -> 'requested' AS requested, p.level,"
            " max(m.horizon_days) AS horizon_days"
            " FROM forecast_models m"
            " JOIN LATERAL (SELECT DISTINCT level FROM forecast_predictions"
            "               WHERE model_id = m.id) p ON true"
            " WHERE m.trained_at >= %s AND m.parameters ? 'requested'"
            " GROUP BY 1, 2, 3"
            " ORDER BY m.series_key, p.level, (m.parameters -> 'requested')::text",
            (trained_since,),
        )
        return [
            ForecastRequest(
                r["series_key"], dict(r["requested"]), int(r["horizon_days"]), float(r["level"])
            )
            for r in await cur.fetchall()
        ]

    async def latest_model_id(self, conn: Conn, series_key: str) -> int | None:
        """Return the id of the most recently trained model of a series, if any."""
        cur = await conn.execute(
            "SELECT id FROM forecast_models WHERE series_key = %s ORDER BY trained_at DESC, id DESC"
            " LIMIT 1",
            (series_key,),
        )
        row = await cur.fetchone()
        return None if row is None else int(row["id"])

    async def find_stored(
        self,
        conn: Conn,
        *,
        series_key: str,
        train_end: date,
        requested: dict[str, Any],
        horizon_days: int,
        level: float,
    ) -> StoredForecast | None:
        """Return the newest stored forecast fitted for exactly these options, if any.

        It must end training on `train_end`, have been asked for with `requested` (recorded in
        its parameters), reach at least `horizon_days` and hold predictions at `level`.
        """
        cur = await conn.execute(
            "SELECT m.id, m.model_name, m.parameters, m.train_start, m.train_end"
            " FROM forecast_models m"
            " WHERE m.series_key = %s AND m.train_end = %s AND m.horizon_days >= %s"
            " AND m.parameters -> 'requested' = %s"
            " AND EXISTS (SELECT 1 FROM forecast_predictions p"
            "             WHERE p.model_id = m.id AND p.level = %s)"
            " ORDER BY m.trained_at DESC, m.id DESC LIMIT 1",
            (series_key, train_end, horizon_days, Jsonb(requested), level),
        )
        row = await cur.fetchone()
        if row is None:
            return None
        model_id = int(row["id"])
        predictions = (await self.predictions(conn, model_id))[:horizon_days]
        cur = await conn.execute(
            "SELECT model_name, folds, mape, rmse, mae, coverage FROM model_performance"
            " WHERE model_id = %s ORDER BY id",
            (model_id,),
        )
        scores = [
            ScoreRow(
                r["model_name"],
                int(r["folds"]),
                None if r["mape"] is None else float(r["mape"]),
                float(r["rmse"]),
                float(r["mae"]),
                float(r["coverage"]),
            )
            for r in await cur.fetchall()
        ]
        return StoredForecast(
            model_id=model_id,
            model_name=row["model_name"],
            parameters=dict(row["parameters"]),
            train_start=row["train_start"],
            train_end=row["train_end"],
            predictions=predictions,
            scores=scores,
        )
