"""Retries: 429 waits Retry-After, transient failures back off, 4xx fail at once, all bounded."""

from __future__ import annotations

import httpx
import pytest

from klaviyo_analytics.errors import FatalError, RetryableError
from klaviyo_analytics.klaviyo import (
    KlaviyoAuthenticationError,
    KlaviyoBadRequestError,
    KlaviyoError,
    KlaviyoMalformedResponseError,
    KlaviyoNotFoundError,
    KlaviyoPermissionError,
    KlaviyoRateLimitedError,
    KlaviyoServerError,
    KlaviyoTimeoutError,
    KlaviyoTransportError,
    StatsSnapshot,
)
from tests.unit.klaviyo.helpers import (
    FakeTime,
    Recorder,
    error_body,
    event,
    jsonapi,
    make_client,
    page_body,
)

OK = jsonapi(page_body([event("e1")]))


async def first_page_ids(recorder: Recorder, time: FakeTime, **kwargs: object) -> list[str]:
    async with make_client(recorder, time, **kwargs) as client:  # type: ignore[arg-type]
        async for page in client.iter_events():
            return [r.id for r in page.records]
    return []


async def test_429_waits_retry_after_then_succeeds() -> None:
    time = FakeTime()
    throttled = jsonapi(error_body(429, "throttled", "Request was throttled."), 429)
    throttled.headers["Retry-After"] = "7"
    recorder = Recorder(throttled, OK)
    async with make_client(recorder, time) as client:
        pages = [p async for p in client.iter_events()]
        stats = client.stats.snapshot()
    assert [r.id for r in pages[0].records] == ["e1"]
    assert time.sleeps == [7.0]
    assert stats == StatsSnapshot(api_calls=2, retries=1, rate_limited=1, errors=0)


async def test_429_without_retry_after_backs_off() -> None:
    time = FakeTime()
    recorder = Recorder(jsonapi(error_body(429, "throttled", "slow down"), 429), OK)
    assert await first_page_ids(recorder, time) == ["e1"]
    assert time.sleeps == [0.1]


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
async def test_server_errors_are_retried_with_exponential_backoff(status: int) -> None:
    time = FakeTime()
    failure = jsonapi(error_body(status, "error", "try later"), status)
    recorder = Recorder(failure, failure, OK)
    assert await first_page_ids(recorder, time) == ["e1"]
    assert time.sleeps == [0.1, 0.2]
    assert len(recorder.requests) == 3


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ReadError("Connection reset by peer"), KlaviyoTransportError),
        (httpx.RemoteProtocolError("peer closed connection"), KlaviyoTransportError),
        (httpx.ConnectError("refused"), KlaviyoTransportError),
        (httpx.ReadTimeout("timed out"), KlaviyoTimeoutError),
        (httpx.PoolTimeout("pool"), KlaviyoTimeoutError),
    ],
)
async def test_resets_and_timeouts_are_retried_then_succeed(
    failure: Exception, error: type[KlaviyoError]
) -> None:
    time = FakeTime()
    recorder = Recorder(failure, OK)
    async with make_client(recorder, time) as client:
        pages = [p async for p in client.iter_events()]
        assert client.stats.snapshot() == StatsSnapshot(2, 1, 0, 1)
    assert [r.id for r in pages[0].records] == ["e1"]
    assert time.sleeps == [0.1]
    # and when it never recovers, the typed error says what happened
    recorder = Recorder(failure)
    with pytest.raises(error) as raised:
        await first_page_ids(recorder, FakeTime(), attempts=2)
    assert raised.value.retryable
    assert not isinstance(raised.value, httpx.HTTPError)


async def test_retries_stop_at_the_attempt_limit_with_a_retryable_error() -> None:
    time = FakeTime()
    recorder = Recorder(jsonapi(error_body(503, "unavailable", "down for maintenance"), 503))
    with pytest.raises(KlaviyoServerError) as raised:
        await first_page_ids(recorder, time, attempts=3)
    assert len(recorder.requests) == 3
    assert isinstance(raised.value, RetryableError) and raised.value.retryable
    assert raised.value.attempts == 3
    assert "down for maintenance" in str(raised.value) and "after 3 attempts" in str(raised.value)


async def test_retries_stop_at_the_deadline() -> None:
    time = FakeTime()
    recorder = Recorder(jsonapi(error_body(503, "unavailable", "down"), 503))
    # delays 0.1, 0.2, 0.4, 0.8, 1.6 ...: a 1 s deadline allows three retries (0.7 s) only
    with pytest.raises(KlaviyoServerError):
        await first_page_ids(recorder, time, attempts=50, deadline_s=1.0)
    assert time.sleeps == [0.1, 0.2, 0.4]
    assert len(recorder.requests) == 4


async def test_a_retry_after_beyond_the_deadline_gives_up_with_the_wait_attached() -> None:
    time = FakeTime()
    throttled = jsonapi(error_body(429, "throttled", "daily limit"), 429, **{"Retry-After": "3600"})
    recorder = Recorder(throttled)
    with pytest.raises(KlaviyoRateLimitedError) as raised:
        await first_page_ids(recorder, time, deadline_s=60.0)
    assert raised.value.retry_after_s == 3600.0
    assert raised.value.retryable
    assert time.sleeps == [] and len(recorder.requests) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, KlaviyoBadRequestError),
        (401, KlaviyoAuthenticationError),
        (403, KlaviyoPermissionError),
        (404, KlaviyoNotFoundError),
    ],
)
async def test_client_errors_raise_at_once_with_klaviyos_detail(
    status: int, error: type[Exception]
) -> None:
    time = FakeTime()
    body = error_body(status, "invalid", f"Problem number {status}.", parameter="filter")
    recorder = Recorder(jsonapi(body, status))
    async with make_client(recorder, time) as client:
        with pytest.raises(error) as raised:
            async for _ in client.iter_events():
                pass
        assert client.stats.snapshot() == StatsSnapshot(1, 0, 0, 1)
    assert len(recorder.requests) == 1 and time.sleeps == []
    exc = raised.value
    assert isinstance(exc, FatalError) and not exc.retryable
    assert f"Problem number {status}." in str(exc)
    assert f"GET /api/events answered {status}" in str(exc)
    (detail,) = exc.details  # type: ignore[attr-defined]
    assert (detail.id, detail.status, detail.code, detail.source_parameter) == (
        "e1f2",
        status,
        "invalid",
        "filter",
    )


async def test_an_error_body_that_is_not_json_still_gives_a_typed_error() -> None:
    recorder = Recorder(httpx.Response(401, content=b"<html>nope</html>"))
    with pytest.raises(KlaviyoAuthenticationError, match="answered 401: Unauthorized"):
        await first_page_ids(recorder, FakeTime())


@pytest.mark.parametrize(
    "content", [b'{"data": [{"type": "event", "id"', b"<html>oops</html>", b"[1, 2]", b"\xff\xfe"]
)
async def test_malformed_bodies_are_retried_then_raise_a_typed_error(content: bytes) -> None:
    time = FakeTime()
    recorder = Recorder(httpx.Response(200, content=content))
    with pytest.raises(KlaviyoMalformedResponseError) as raised:
        await first_page_ids(recorder, time, attempts=3)
    assert len(recorder.requests) == 3 and raised.value.retryable
    recorder = Recorder(httpx.Response(200, content=content), OK)
    assert await first_page_ids(recorder, FakeTime()) == ["e1"]


async def test_a_document_without_data_is_malformed() -> None:
    recorder = Recorder(jsonapi({"links": {}}))
    with pytest.raises(KlaviyoMalformedResponseError, match="without a data array"):
        await first_page_ids(recorder, FakeTime())


async def test_stats_snapshot_and_reset() -> None:
    time = FakeTime()
    recorder = Recorder(jsonapi({}, 500), jsonapi({}, 429, **{"Retry-After": "1"}), OK)
    async with make_client(recorder, time) as client:
        async for _ in client.iter_events():
            pass
        before = client.stats.reset()
        assert before == StatsSnapshot(api_calls=3, retries=2, rate_limited=1, errors=1)
        assert client.stats.snapshot() == StatsSnapshot()
