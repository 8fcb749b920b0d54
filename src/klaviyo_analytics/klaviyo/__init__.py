"""The Klaviyo API client: auth, revision, paging, rate limits, retries and typed records.

Open one `KlaviyoClient` per process with `async with` and pass it down. Nothing here imports
the database layer, and httpx's exceptions never leave this package.
"""

from klaviyo_analytics.klaviyo.client import CHANNELS, Channel, KlaviyoClient
from klaviyo_analytics.klaviyo.errors import (
    ErrorDetail,
    KlaviyoAuthenticationError,
    KlaviyoBadRequestError,
    KlaviyoClientError,
    KlaviyoError,
    KlaviyoInvalidPayloadError,
    KlaviyoMalformedResponseError,
    KlaviyoNotFoundError,
    KlaviyoPagingError,
    KlaviyoPermissionError,
    KlaviyoRateLimitedError,
    KlaviyoServerError,
    KlaviyoTimeoutError,
    KlaviyoTransportError,
)
from klaviyo_analytics.klaviyo.models import (
    Account,
    Attribution,
    Campaign,
    CampaignMessage,
    Event,
    Flow,
    FlowAction,
    FlowMessage,
    Form,
    KlaviyoList,
    Metric,
    Profile,
    Resource,
    Segment,
    Template,
)
from klaviyo_analytics.klaviyo.paging import InvalidRecord, Page
from klaviyo_analytics.klaviyo.ratelimit import RATE_LIMITS, RateLimit, RateLimiter
from klaviyo_analytics.klaviyo.reports import (
    AggregateRow,
    MetricAggregate,
    ReportResult,
    SeriesReport,
    Timeframe,
    ValuesReport,
)
from klaviyo_analytics.klaviyo.session import ClientStats, StatsSnapshot

__all__ = [
    "CHANNELS",
    "RATE_LIMITS",
    "Account",
    "AggregateRow",
    "Attribution",
    "Campaign",
    "CampaignMessage",
    "Channel",
    "ClientStats",
    "ErrorDetail",
    "Event",
    "Flow",
    "FlowAction",
    "FlowMessage",
    "Form",
    "InvalidRecord",
    "KlaviyoAuthenticationError",
    "KlaviyoBadRequestError",
    "KlaviyoClient",
    "KlaviyoClientError",
    "KlaviyoError",
    "KlaviyoInvalidPayloadError",
    "KlaviyoList",
    "KlaviyoMalformedResponseError",
    "KlaviyoNotFoundError",
    "KlaviyoPagingError",
    "KlaviyoPermissionError",
    "KlaviyoRateLimitedError",
    "KlaviyoServerError",
    "KlaviyoTimeoutError",
    "KlaviyoTransportError",
    "Metric",
    "MetricAggregate",
    "Page",
    "Profile",
    "RateLimit",
    "RateLimiter",
    "ReportResult",
    "Resource",
    "Segment",
    "SeriesReport",
    "StatsSnapshot",
    "Template",
    "Timeframe",
    "ValuesReport",
]
