"""Response bodies of the API that are not analytics results (those reuse the analytics types)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Source = Literal["database", "klaviyo"]


class Sourced(BaseModel):
    """A body that says where its figures came from (also in the X-Data-Source header)."""

    source: Source = Field(description="database, or klaviyo when answered from the API")


class ErrorBody(BaseModel):
    """What went wrong: a stable code, a message for people, and structured details."""

    code: str = Field(examples=["invalid_parameter"])
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """Every error of the API has this shape."""

    error: ErrorBody


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "No API key, or an unknown or revoked one"},
    403: {"model": ErrorResponse, "description": "The key's role may not do this"},
    422: {"model": ErrorResponse, "description": "A parameter is invalid (it is named)"},
    429: {"model": ErrorResponse, "description": "Rate limited; see Retry-After"},
    503: {"model": ErrorResponse, "description": "The database or Klaviyo is unavailable"},
}


class RangeModel(BaseModel):
    """An inclusive range of the store's local dates."""

    model_config = ConfigDict(from_attributes=True)

    start: date
    end: date


class Health(BaseModel):
    """Liveness: the process answers."""

    status: Literal["ok"]


class CheckModel(BaseModel):
    """One readiness check."""

    model_config = ConfigDict(from_attributes=True)

    name: str
    status: Literal["ok", "warn", "fail"]
    required: bool
    detail: str


class ReadinessModel(BaseModel):
    """Readiness: every check; `ready` is false (and the status 503) when a required one failed."""

    ready: bool
    checks: list[CheckModel]


class SyncRunModel(BaseModel):
    """One recorded run of one stream."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    stream: str
    status: Literal["running", "succeeded", "failed", "cancelled"]
    started_at: datetime
    finished_at: datetime | None
    rows: dict[str, int]
    api_calls: int
    retries: int
    rate_limited: int
    errors: int
    quarantined: int
    error_message: str | None
    duration_ms: int | None


class LiveProgress(BaseModel):
    """The live counters of a running stream."""

    run_id: int | None
    records: int = Field(description="records fetched from Klaviyo so far")
    rows: dict[str, int] = Field(description="rows written so far, per table")
    pages: int
    fraction: float | None = Field(description="share done (0..1) when known")
    rate_per_s: float
    elapsed_s: float


class StreamStatus(BaseModel):
    """A stream's last recorded run and, while it runs, its live progress."""

    stream: str
    last_run: SyncRunModel | None
    running: LiveProgress | None


class SyncStatusResponse(BaseModel):
    """Every stream's state."""

    running: bool
    streams: list[StreamStatus]


class StartedRun(BaseModel):
    """A run that exists in the history (its row is written)."""

    stream: str
    run_id: int


class SyncStarted(BaseModel):
    """A sync accepted and started in the background."""

    stream: str = Field(description="the stream asked for, or all")
    runs: list[StartedRun] = Field(description="runs that have started so far")
    status_url: str


class SyncRunsPage(BaseModel):
    """One page of the run history, newest first."""

    runs: list[SyncRunModel]
    total: int
    limit: int
    offset: int


class CacheCleared(BaseModel):
    """What POST /api/cache/clear did."""

    cleared: int
    backend: str


class MetricModel(BaseModel):
    """A Klaviyo metric (an event type)."""

    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    integration: str | None


class MetricsResponse(Sourced):
    """Every metric of the account."""

    metrics: list[MetricModel]


class AccountResponse(Sourced):
    """The account and how fresh its data is."""

    name: str | None
    timezone: str
    currency: str | None
    last_sync_at: datetime | None = Field(description="when the last successful sync run ended")
    fresh: bool = Field(description="whether that is within STALE_AFTER_MINUTES")
    stale_after_minutes: int


class ApiKeyModel(BaseModel):
    """An API key, without its secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    role: Literal["reader", "admin"]
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class ApiKeysResponse(BaseModel):
    """Every API key."""

    keys: list[ApiKeyModel]


class NewApiKey(BaseModel):
    """A key just created: `token` is shown this once."""

    key: ApiKeyModel
    token: str


class NewApiKeyRequest(BaseModel):
    """What a new key is called and what it may do."""

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    role: Literal["reader", "admin"] = "reader"
