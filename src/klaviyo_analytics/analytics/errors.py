"""Errors raised by the analytics modules (shared by periods, KPIs, series, forecasts, anomalies).

The API maps them to HTTP statuses: InvalidParameterError to 422 (or 400), UnknownMetricError to
404, SeriesTooShortError to 422 (the request is valid; the data cannot support the answer),
AnalysisUnavailableError to 503.
"""

from __future__ import annotations

from klaviyo_analytics.errors import (
    FatalError,
    KlaviyoAnalyticsError,
    NotFoundError,
    RetryableError,
)


class InvalidParameterError(KlaviyoAnalyticsError, ValueError):
    """A caller's argument is out of range or malformed (an interval, a level, a date range)."""


class InvalidRangeError(InvalidParameterError):
    """A date range that is malformed: start after end, an unknown preset, a missing bound."""


class UnknownMetricError(NotFoundError):
    """A metric id that is not in `klaviyo_metrics`."""


class SeriesTooShortError(FatalError):
    """A series holds too little history for the statistic asked of it (never guessed at)."""


class ModelUnavailableError(FatalError):
    """A forecast model could not be fitted to this series; the reason is the message.

    Defined here rather than beside the models so that code mapping errors (the API) does not
    import the modelling libraries (statsmodels, scipy, pandas: about 130 MiB resident).
    """


class AnalysisUnavailableError(RetryableError):
    """An analysis worker process stopped during a fit; the next fit starts a new one."""
