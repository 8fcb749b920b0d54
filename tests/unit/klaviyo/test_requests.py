"""What goes on the wire and in the logs: exact headers, no API key anywhere else."""

from __future__ import annotations

import logging

import httpx
import pytest
from pydantic import SecretStr

from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.klaviyo import KlaviyoClient, KlaviyoError
from tests.unit.klaviyo.helpers import (
    API_KEY,
    BASE,
    FakeTime,
    Recorder,
    error_body,
    event,
    jsonapi,
    make_client,
    page_body,
)

OK = jsonapi(page_body([event("e1")]))


async def test_requests_carry_the_auth_revision_and_accept_headers() -> None:
    recorder = Recorder(OK)
    async with make_client(recorder) as client:
        async for _ in client.iter_events():
            pass
    headers = recorder.requests[0].headers
    assert headers["authorization"] == f"Klaviyo-API-Key {API_KEY}"
    assert headers["revision"] == "2026-07-15"
    assert headers["accept"] == "application/vnd.api+json"
    assert "content-type" not in headers
    assert str(recorder.requests[0].url).startswith(f"{BASE}/api/events?")


async def test_a_secretstr_key_and_another_revision_are_sent_as_given() -> None:
    recorder = Recorder(OK)
    client = KlaviyoClient(
        api_key=SecretStr("pk_other"),
        base_url="http://127.0.0.1:8123/",
        revision="2025-01-15",
        transport=httpx.MockTransport(recorder),
        rate_limits_enabled=False,
    )
    async with client:
        async for _ in client.iter_metrics():
            pass
    request = recorder.requests[0]
    assert request.headers["authorization"] == "Klaviyo-API-Key pk_other"
    assert request.headers["revision"] == "2025-01-15"
    assert str(request.url) == "http://127.0.0.1:8123/api/metrics"


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_key_is_a_configuration_error(key: str) -> None:
    with pytest.raises(ConfigurationError, match="empty"):
        KlaviyoClient(api_key=key)


def test_a_base_url_that_is_not_http_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not an http"):
        KlaviyoClient(api_key="pk_x", base_url="ftp://a.klaviyo.com")


async def test_the_api_key_never_appears_in_logs_reprs_or_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    time = FakeTime()
    recorder = Recorder(
        httpx.ReadError("Connection reset by peer"),
        jsonapi(error_body(429, "throttled", "slow"), 429, **{"Retry-After": "2"}),
        jsonapi(error_body(500, "error", "oops"), 500),
        jsonapi(error_body(401, "not_authenticated", "Incorrect authentication credentials."), 401),
    )
    client = make_client(recorder, time, attempts=5)
    async with client:
        with pytest.raises(KlaviyoError) as raised:
            async for _ in client.iter_events():
                pass
    exc = raised.value
    texts = [caplog.text, str(exc), repr(exc), repr(client), str(client), str(exc.__cause__)]
    texts += [repr(r) for r in caplog.records] + [str(r.args) for r in caplog.records]
    for text in texts:
        assert API_KEY not in text
        assert API_KEY[3:15] not in text
    assert repr(client) == f"KlaviyoClient(base_url={BASE!r})"
    assert "Incorrect authentication credentials." in str(exc)


async def test_each_request_is_logged_at_debug_and_each_retry_at_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="klaviyo_analytics.klaviyo")
    recorder = Recorder(jsonapi(error_body(503, "down", "later"), 503), OK)
    async with make_client(recorder, FakeTime()) as client:
        async for _ in client.iter_events():
            pass
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith("GET /api/events -> 503 in ") for m in debug)
    assert any(m.startswith("GET /api/events -> 200 in ") for m in debug)
    assert len(warnings) == 1
    assert warnings[0].startswith("Retrying GET /api/events in 0.10 s after try 1 of 4")
