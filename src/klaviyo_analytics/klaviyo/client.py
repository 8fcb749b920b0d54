"""The Klaviyo API client the sync codes against: one per process, opened with `async with`.

Collections are iterated page by page (`async for page in client.iter_events(...)`), each page
holding validated records with their included objects joined, the records that failed
validation, and the raw document for archiving. Paths, filters, includes and page sizes are read
off Klaviyo's OpenAPI spec, revision 2026-07-15.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.klaviyo.errors import KlaviyoInvalidPayloadError
from klaviyo_analytics.klaviyo.models import (
    Account,
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
    checked_id,
)
from klaviyo_analytics.klaviyo.paging import CursorGuard, Page, build_page, next_link, origin_of
from klaviyo_analytics.klaviyo.queries import ReportQueries
from klaviyo_analytics.klaviyo.ratelimit import PREDICTIVE_PROFILES, RateLimiter
from klaviyo_analytics.klaviyo.session import ApiSession, ClientStats
from klaviyo_analytics.retry import RetryPolicy

R = TypeVar("R", bound=Resource)
Channel = Literal["email", "sms", "mobile_push"]

DEFAULT_BASE_URL: Final = "https://a.klaviyo.com"
DEFAULT_REVISION: Final = "2026-07-15"
# Patient enough for a 429 storm on the reporting endpoints (2/m), bounded by a deadline.
DEFAULT_RETRY: Final = RetryPolicy(attempts=8, base_s=0.5, cap_s=30.0, deadline_s=300.0)
CHANNELS: Final = ("email", "sms", "mobile_push")
EVENT_INCLUDES: Final = ("metric", "profile", "attributions")

# Each endpoint's maximum `page[size]` (None: the endpoint takes no page[size]).
PAGE_SIZES: Final[Mapping[str, int | None]] = {
    "get_events": 1000,
    "get_profiles": 100,
    "get_campaigns": 100,
    "get_messages_for_campaign": None,
    "get_flows": 50,
    "get_actions_for_flow": 50,
    "get_flow_action_messages": 50,
    "get_lists": 10,
    "get_segments": 10,
    "get_forms": 100,
    "get_templates": 10,
    "get_metrics": None,
}


def filter_datetime(moment: datetime) -> str:
    """Format an aware datetime for a Klaviyo filter (ISO 8601 in UTC).

    Raises ValueError if `moment` is naive: the API would read it in an unknown zone.
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime {moment.isoformat()} has no timezone")
    return moment.astimezone(UTC).isoformat()


def combine_filters(parts: Sequence[str]) -> str | None:
    """Join filter expressions with `and(...)` (None when there are none)."""
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else f"and({','.join(parts)})"


class KlaviyoClient(ReportQueries):
    """An async client of the Klaviyo REST API (or the local sandbox at another `base_url`).

    Create one per process and share it: its rate limiter spreads all concurrent requests of an
    operation within Klaviyo's limits. Raises ConfigurationError for an empty key or a base URL
    that is not http(s).
    """

    def __init__(
        self,
        *,
        api_key: str | SecretStr,
        base_url: str = DEFAULT_BASE_URL,
        revision: str = DEFAULT_REVISION,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rate_limits_enabled: bool = True,
        max_connections: int = 32,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        key = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)
        if not key.get_secret_value().strip():
            raise ConfigurationError("the Klaviyo API key is empty")
        base = base_url.rstrip("/")
        origin = origin_of(base)
        if origin[0] not in ("http", "https") or not origin[1]:
            raise ConfigurationError(f"the Klaviyo base URL {base_url!r} is not an http(s) URL")
        policy = retry or DEFAULT_RETRY
        if rate_limits_enabled and rate_limiter is None:
            rate_limiter = RateLimiter(clock=policy.clock, sleep=policy.sleep)
        self._base_url = base
        self._origin = origin
        self._session = ApiSession(
            api_key=key,
            base_url=base,
            revision=revision,
            retry=policy,
            timeout_s=timeout_s,
            transport=transport,
            limiter=rate_limiter if rate_limits_enabled else None,
            max_connections=max_connections,
        )

    def __repr__(self) -> str:
        return f"KlaviyoClient(base_url={self._base_url!r})"

    @property
    def base_url(self) -> str:
        """The API's base URL (no secret)."""
        return self._base_url

    @property
    def stats(self) -> ClientStats:
        """The live counters (api_calls, retries, rate_limited, errors); snapshot or reset them."""
        return self._session.stats

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; the client cannot be used afterwards."""
        await self._session.aclose()

    # -- paging core -------------------------------------------------------------------------

    async def _iterate(
        self,
        operation: str,
        model: type[R],
        path: str,
        params: dict[str, str],
        *,
        context: Mapping[str, Any] | None = None,
        start_url: str | None = None,
        limit_key: str | None = None,
        keep_raw: bool = True,
    ) -> AsyncIterator[Page[R]]:
        # `limit_key`: the rate limiter's name for these requests, when the parameters give
        # them other limits than the operation's own (predictive analytics on profiles).
        # `keep_raw=False` drops each body once its page is validated: a page of 1,000 events
        # is ~3.8 MB of Python objects as parsed against ~2.2 MB as records, and a backfill
        # holds one page per window in flight.
        guard = CursorGuard(self._origin)
        size = PAGE_SIZES.get(operation)
        if size is not None:
            params = {**params, "page[size]": str(size)}
        url: str = path
        query: dict[str, str] | None = params
        if start_url is not None:
            guard.check(start_url)
            url, query = start_url, None
        while True:
            body, fetched = await self._session.request(
                limit_key or operation, "GET", url, params=query
            )
            guard.visited(fetched)
            next_url = next_link(body)
            # This frame stays suspended at `yield` while the caller stores the page: it must
            # hold neither the body nor the page then (a local would, until resumed).
            parsed = [body]
            del body
            yield build_page(model, parsed.pop(), url=fetched, context=context, keep_raw=keep_raw)
            if next_url is None:
                return
            guard.check(next_url)
            url, query = next_url, None

    async def _get_one(
        self, operation: str, model: type[R], path: str, params: dict[str, str]
    ) -> R:
        body, url = await self._session.request(operation, "GET", path, params=params)
        data = body.get("data")
        if isinstance(data, list):
            data = data[0] if data else None
        if not isinstance(data, Mapping):
            raise KlaviyoInvalidPayloadError(
                f"GET {path} answered no {model.resource_type} object", method="GET", url=url
            )
        try:
            return model.from_resource(data)
        except ValueError as exc:
            raise KlaviyoInvalidPayloadError(
                f"GET {path} answered an invalid {model.resource_type}: {exc}",
                method="GET",
                url=url,
            ) from exc

    # -- resources ---------------------------------------------------------------------------

    async def get_account(self) -> Account:
        """Fetch the account (timezone, currency, organization name).

        Raises KlaviyoError subclasses (see `klaviyo.errors`).
        """
        return await self._get_one("get_accounts", Account, "/api/accounts", {})

    def iter_metrics(self) -> AsyncIterator[Page[Metric]]:
        """Iterate over every metric, page by page."""
        return self._iterate("get_metrics", Metric, "/api/metrics", {})

    def iter_events(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        metric_id: str | None = None,
        *,
        include: Sequence[str] = EVENT_INCLUDES,
        start_url: str | None = None,
        keep_raw: bool = True,
    ) -> AsyncIterator[Page[Event]]:
        """Iterate over events with `since <= datetime < until`, oldest first.

        `start_url` resumes from a page's `url`/`next_url` (it already holds the filter, so the
        other arguments are then ignored). With `keep_raw=False` pages carry no body (`raw` is
        None), which keeps a page's memory to its records. Raises ValueError for naive datetimes or a malformed
        metric id, and KlaviyoError subclasses as the pages are fetched.
        """
        parts: list[str] = []
        if since is not None:
            parts.append(f"greater-or-equal(datetime,{filter_datetime(since)})")
        if until is not None:
            parts.append(f"less-than(datetime,{filter_datetime(until)})")
        if metric_id is not None:
            parts.append(f'equals(metric_id,"{checked_id(metric_id, "metric id")}")')
        params = {"sort": "datetime"}
        combined = combine_filters(parts)
        if combined is not None:
            params["filter"] = combined
        if include:
            params["include"] = ",".join(include)
        return self._iterate(
            "get_events", Event, "/api/events", params, start_url=start_url, keep_raw=keep_raw
        )

    def iter_profiles(
        self, updated_after: datetime | None = None, *, predictive_analytics: bool = True
    ) -> AsyncIterator[Page[Profile]]:
        """Iterate over profiles in `updated` order, optionally only those with `updated > updated_after`.

        With `predictive_analytics` (the default) each profile carries Klaviyo's own CLV
        predictions (`additional-fields[profile]=predictive_analytics`); Klaviyo limits those
        requests to 10/s and 150/m instead of 75/s and 750/m, and the client's limiter keeps
        them apart (`PREDICTIVE_PROFILES`). Pages stay at 100 profiles, the spec's maximum.
        """
        params: dict[str, str] = {"sort": "updated"}
        if updated_after is not None:
            params["filter"] = f"greater-than(updated,{filter_datetime(updated_after)})"
        if not predictive_analytics:
            return self._iterate("get_profiles", Profile, "/api/profiles", params)
        params["additional-fields[profile]"] = "predictive_analytics"
        return self._iterate(
            "get_profiles", Profile, "/api/profiles", params, limit_key=PREDICTIVE_PROFILES
        )

    def iter_campaigns(self, channel: Channel) -> AsyncIterator[Page[Campaign]]:
        """Iterate over the campaigns of one channel, their messages joined.

        Klaviyo requires the channel filter, so there is no way to list without one.
        Raises ValueError for an unknown channel.
        """
        if channel not in CHANNELS:
            raise ValueError(f"campaign channel must be one of {CHANNELS}, got {channel!r}")
        params = {
            "filter": f"equals(messages.channel,'{channel}')",
            "include": "campaign-messages",
        }
        return self._iterate(
            "get_campaigns", Campaign, "/api/campaigns", params, context={"channel": channel}
        )

    def iter_campaign_messages(self, campaign_id: str) -> AsyncIterator[Page[CampaignMessage]]:
        """Iterate over the messages of one campaign."""
        ident = checked_id(campaign_id, "campaign id")
        return self._iterate(
            "get_messages_for_campaign",
            CampaignMessage,
            f"/api/campaigns/{quote(ident)}/campaign-messages",
            {},
            context={"campaign_id": ident},
        )

    def iter_flows(self) -> AsyncIterator[Page[Flow]]:
        """Iterate over every flow."""
        return self._iterate("get_flows", Flow, "/api/flows", {})

    def iter_flow_actions(self, flow_id: str) -> AsyncIterator[Page[FlowAction]]:
        """Iterate over the actions of one flow."""
        ident = checked_id(flow_id, "flow id")
        return self._iterate(
            "get_actions_for_flow",
            FlowAction,
            f"/api/flows/{quote(ident)}/flow-actions",
            {},
            context={"flow_id": ident},
        )

    def iter_flow_messages(self, action_id: str) -> AsyncIterator[Page[FlowMessage]]:
        """Iterate over the messages of one flow action."""
        ident = checked_id(action_id, "flow action id")
        return self._iterate(
            "get_flow_action_messages",
            FlowMessage,
            f"/api/flow-actions/{quote(ident)}/flow-messages",
            {},
            context={"flow_action_id": ident},
        )

    def iter_lists(self) -> AsyncIterator[Page[KlaviyoList]]:
        """Iterate over every list."""
        return self._iterate("get_lists", KlaviyoList, "/api/lists", {})

    def iter_segments(self) -> AsyncIterator[Page[Segment]]:
        """Iterate over every segment (without profile counts; see `get_segment`)."""
        return self._iterate("get_segments", Segment, "/api/segments", {})

    async def get_segment(self, segment_id: str, *, profile_count: bool = True) -> Segment:
        """Fetch one segment, with its `profile_count` unless told otherwise.

        Raises KlaviyoNotFoundError for an unknown id, other KlaviyoError subclasses otherwise.
        """
        ident = checked_id(segment_id, "segment id")
        params = {"additional-fields[segment]": "profile_count"} if profile_count else {}
        return await self._get_one("get_segment", Segment, f"/api/segments/{ident}", params)

    def iter_forms(self) -> AsyncIterator[Page[Form]]:
        """Iterate over every signup form."""
        return self._iterate("get_forms", Form, "/api/forms", {})

    def iter_templates(self) -> AsyncIterator[Page[Template]]:
        """Iterate over every email template."""
        return self._iterate("get_templates", Template, "/api/templates", {})
