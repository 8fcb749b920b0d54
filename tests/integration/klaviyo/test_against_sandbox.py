"""The Klaviyo client against the sandbox over real HTTP: paging, limits, faults, errors."""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest

from klaviyo_analytics.klaviyo import (
    KlaviyoAuthenticationError,
    KlaviyoBadRequestError,
    KlaviyoClient,
    KlaviyoMalformedResponseError,
    KlaviyoTimeoutError,
    Page,
    Resource,
    Timeframe,
)
from klaviyo_analytics.retry import RetryPolicy
from klaviyo_analytics.sandbox.config import FaultOptions, StoreOptions
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sandbox import SandboxFactory

R = TypeVar("R", bound=Resource)

# Big enough for more than ten pages of 1000 events.
BIG_STORE = StoreOptions(seed=11, profiles=2_000, days=21, campaigns=6, flows=5)


class Sleeps:
    """A sleep that records what was asked; `real` decides whether it actually waits."""

    def __init__(self, *, real: bool) -> None:
        self.real = real
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(seconds if self.real else 0)


def client_for(
    server: SandboxServer,
    *,
    sleeps: Sleeps | None = None,
    attempts: int = 10,
    rate_limits_enabled: bool = False,
    **kwargs: object,
) -> KlaviyoClient:
    sleep = sleeps or Sleeps(real=False)
    retry = RetryPolicy(attempts=attempts, base_s=0.05, cap_s=1.0, deadline_s=60.0, sleep=sleep)
    return KlaviyoClient(
        api_key=kwargs.pop("api_key", server.api_key),  # type: ignore[arg-type]
        base_url=server.base_url,
        retry=retry,
        rate_limits_enabled=rate_limits_enabled,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_full_event_pagination_matches_the_sandbox_count(
    make_sandbox: SandboxFactory,
) -> None:
    server = make_sandbox(store=BIG_STORE, rate_limits=True)
    expected = server.generator.count_events()
    assert expected >= 10_000
    ids: list[str] = []
    last = datetime.min.replace(tzinfo=UTC)
    pages = 0
    async with client_for(server, rate_limits_enabled=True) as client:
        async for page in client.iter_events():
            pages += 1
            assert page.invalid == []
            for record in page.records:
                assert record.datetime >= last
                last = record.datetime
                ids.append(record.id)
        stats = client.stats.snapshot()
    assert len(ids) == expected
    assert len(set(ids)) == expected
    assert pages >= 10
    assert stats.api_calls == pages and stats.rate_limited == 0 and stats.errors == 0


async def test_a_stored_page_leaves_no_body_behind_for_the_cycle_collector(
    make_sandbox: SandboxFactory,
) -> None:
    # An httpx response and its stream refer to each other: a body the response kept lived
    # until the cycle collector ran, which the sync makes rare, and a backfill's RSS grew by
    # a page's body (~1 MB per 1,000 events) for each page fetched meanwhile.
    server = make_sandbox(store=BIG_STORE)
    async with client_for(server) as client:
        pages = client.iter_events(keep_raw=False)
        await anext(pages)  # connections, caches and imports come first
        gc.collect()
        gc.disable()
        tracemalloc.start()
        try:
            page = await anext(pages)
            fetched = len(page.records)
            del page
            kept = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, "*httpx*"), tracemalloc.Filter(True, "*klaviyo*")]
            )
        finally:
            tracemalloc.stop()
            gc.enable()
        await pages.aclose()  # type: ignore[attr-defined]
    assert fetched == 1000
    left = sum(stat.size for stat in kept.statistics("filename"))
    assert left < 200_000, kept.statistics("lineno")[:5]


async def test_an_event_window_includes_since_and_excludes_until(
    sandbox: SandboxServer,
) -> None:
    generator = sandbox.generator
    since = datetime.fromtimestamp(generator.end_ts - 3 * 86_400, UTC)
    until = datetime.fromtimestamp(generator.end_ts - 86_400, UTC)
    async with client_for(sandbox) as client:
        pages = [p async for p in client.iter_events(since=since)]
        first = pages[0].records[0]
        window = [r async for p in client.iter_events(since, until) for r in p.records]
        # resuming at the last seen datetime re-reads it (inclusive), never skips it
        again = [r async for p in client.iter_events(since=first.datetime) for r in p.records]
    assert window and all(since <= r.datetime < until for r in window)
    expected = generator.count_events(int(since.timestamp()), int(until.timestamp()))
    assert len(window) == expected
    assert again[0].id == first.id


async def test_events_come_with_metric_profile_and_attributions_joined(
    sandbox: SandboxServer,
) -> None:
    async with client_for(sandbox) as client:
        events = [r async for p in client.iter_events() for r in p.records]
    assert all(e.metric is not None and e.metric.id == e.metric_id for e in events)
    with_profile = [e for e in events if e.profile_id is not None]
    assert with_profile and all(e.profile and e.profile.id == e.profile_id for e in with_profile)
    attributed = [e for e in events if e.attributions]
    assert attributed
    for event in attributed:
        for attribution in event.attributions:
            assert attribution.campaign_message_id or attribution.flow_message_id


async def collect(iterator: AsyncIterator[Page[R]]) -> list[R]:
    records: list[R] = []
    async for page in iterator:
        assert page.invalid == [], page.invalid[:1]
        records.extend(page.records)
    return records


async def test_every_resource_and_report_validates_against_the_sandbox(
    sandbox: SandboxServer,
) -> None:
    async with client_for(sandbox) as client:
        account = await client.get_account()
        assert account.timezone and account.preferred_currency

        metrics = await collect(client.iter_metrics())
        assert await collect(client.iter_profiles())
        email = await collect(client.iter_campaigns("email"))
        assert await collect(client.iter_campaigns("sms"))
        assert await collect(client.iter_campaign_messages(email[0].id))
        flows = await collect(client.iter_flows())
        actions = await collect(client.iter_flow_actions(flows[0].id))
        assert await collect(client.iter_flow_messages(actions[0].id))
        assert await collect(client.iter_lists())
        assert await collect(client.iter_segments())
        assert await collect(client.iter_forms())
        await collect(client.iter_templates())

        placed = next(m for m in metrics if m.name == "Placed Order")
        report = await client.query_campaign_values(
            statistics=["opens", "conversion_value"],
            timeframe=Timeframe(key="last_30_days"),
            conversion_metric_id=placed.id,
            group_by=["campaign_id"],
        )
        assert report.results
        series = await client.query_flow_series(
            statistics=["opens"],
            timeframe=Timeframe(key="last_7_days"),
            interval="daily",
            conversion_metric_id=placed.id,
        )
        assert series.date_times
        end = datetime.fromtimestamp(sandbox.generator.end_ts, UTC)
        aggregate = await client.query_metric_aggregates(
            metric_id=placed.id,
            start=end - timedelta(days=7),
            end=end,
            timezone=account.timezone,
        )
        assert aggregate.dates


async def test_a_429_storm_is_waited_out_per_retry_after(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(rate_limits=True)
    sleeps = Sleeps(real=True)
    async with client_for(server, sleeps=sleeps, attempts=20) as client:

        async def list_flows() -> int:
            return sum([len(p.records) async for p in client.iter_flows()])

        counts = await asyncio.gather(*(list_flows() for _ in range(8)))
        stats = client.stats.snapshot()
    assert len(set(counts)) == 1 and counts[0] > 0
    assert stats.rate_limited > 0
    assert stats.retries == stats.rate_limited
    # the waits are the server's Retry-After (whole seconds), not our backoff
    assert sleeps.delays and all(d >= 1 and d == int(d) for d in sleeps.delays)


async def test_our_limiter_keeps_the_same_burst_free_of_429s(make_sandbox: SandboxFactory) -> None:
    server = make_sandbox(rate_limits=True)
    async with KlaviyoClient(api_key=server.api_key, base_url=server.base_url) as client:

        async def list_flows() -> None:
            async for _ in client.iter_flows():
                pass

        await asyncio.gather(*(list_flows() for _ in range(8)))
        stats = client.stats.snapshot()
    assert stats == type(stats)(api_calls=8, retries=0, rate_limited=0, errors=0)


async def test_server_errors_and_resets_are_retried_to_a_complete_result(
    make_sandbox: SandboxFactory,
) -> None:
    faults = FaultOptions(seed=5, p500=0.15, p503=0.15, p_reset=0.15, p_truncated=0.05)
    server = make_sandbox(faults=faults)
    async with client_for(server, attempts=25) as client:
        profiles = [r async for p in client.iter_profiles() for r in p.records]
        events = [r async for p in client.iter_events() for r in p.records]
        stats = client.stats.snapshot()
    assert len(events) == server.generator.count_events()
    assert len({p.id for p in profiles}) == server.config.store.profiles
    assert stats.retries > 0 and stats.errors == stats.retries


@pytest.mark.parametrize(
    "faults", [FaultOptions(p_malformed=1.0), FaultOptions(p_truncated=1.0)], ids=str
)
async def test_malformed_bodies_end_in_a_typed_error(
    make_sandbox: SandboxFactory, faults: FaultOptions
) -> None:
    server = make_sandbox(faults=faults)
    async with client_for(server, attempts=3) as client:
        with pytest.raises(KlaviyoMalformedResponseError) as raised:
            await client.get_account()
        assert client.stats.snapshot().api_calls == 3
    assert raised.value.retryable and raised.value.attempts == 3


async def test_a_request_that_outlasts_the_timeout_ends_in_a_typed_error(
    make_sandbox: SandboxFactory,
) -> None:
    server = make_sandbox(faults=FaultOptions(p_timeout=1.0, timeout_s=5))
    async with client_for(server, attempts=2, timeout_s=0.3) as client:
        with pytest.raises(KlaviyoTimeoutError):
            await client.get_account()


async def test_a_bad_key_raises_at_once_with_klaviyos_detail(
    sandbox: SandboxServer, caplog: pytest.LogCaptureFixture
) -> None:
    key = "pk_wrong_key_000000"
    async with client_for(sandbox, api_key=key) as client:
        with pytest.raises(KlaviyoAuthenticationError) as raised:
            await client.get_account()
        assert client.stats.snapshot().api_calls == 1
    assert raised.value.status == 401 and raised.value.details
    assert raised.value.details[0].detail and raised.value.details[0].detail in str(raised.value)
    assert key not in str(raised.value) and key not in caplog.text


async def test_a_missing_revision_raises_a_bad_request_at_once(sandbox: SandboxServer) -> None:
    async with client_for(sandbox, revision="") as client:
        with pytest.raises(KlaviyoBadRequestError) as raised:
            await client.get_account()
        assert client.stats.snapshot().api_calls == 1
    assert raised.value.details and "revision" in str(raised.value).lower()


async def test_the_key_never_reaches_the_logs(
    make_sandbox: SandboxFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = make_sandbox(faults=FaultOptions(seed=2, p500=0.3, p_reset=0.2, p429=0.2))
    async with client_for(server, attempts=30) as client:
        async for _ in client.iter_profiles():
            pass
        assert client.stats.snapshot().retries > 0
    assert any(r.name.startswith(("httpx", "httpcore")) for r in caplog.records)
    assert server.api_key not in caplog.text
