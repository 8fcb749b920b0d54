"""Over a real loopback socket: httpcore's own DEBUG logs never carry the key, and a body cut
short by the server is retried and then reported as a typed error."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from klaviyo_analytics.klaviyo import KlaviyoClient, KlaviyoTransportError
from klaviyo_analytics.retry import RetryPolicy
from tests.unit.klaviyo.helpers import API_KEY, FakeTime

PAGE = b'{"data": [], "links": {"self": "x", "next": null}}'


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen_auth: list[str] = []

    def do_GET(self) -> None:
        self.seen_auth.append(self.headers.get("Authorization", ""))
        if self.path.startswith("/api/lists"):
            # announce more than is sent, then hang up: a truncated body
            self.send_response(200)
            self.send_header("Content-Length", "500")
            self.end_headers()
            self.wfile.write(b'{"data": [')
            self.close_connection = True
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.api+json")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def test_no_log_line_of_httpx_or_httpcore_carries_the_key(
    server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with KlaviyoClient(api_key=API_KEY, base_url=server_url) as client:
        async for _ in client.iter_metrics():
            pass
    assert _Handler.seen_auth[-1] == f"Klaviyo-API-Key {API_KEY}"
    assert any(r.name.startswith("httpcore") for r in caplog.records)
    assert API_KEY not in caplog.text


async def test_a_truncated_body_is_retried_then_a_typed_error(server_url: str) -> None:
    time = FakeTime()
    retry = RetryPolicy(attempts=3, base_s=0.1, jitter=False, sleep=time.sleep, clock=time.clock)
    async with KlaviyoClient(
        api_key=API_KEY, base_url=server_url, retry=retry, rate_limits_enabled=False
    ) as client:
        with pytest.raises(KlaviyoTransportError, match="after 3 attempts") as raised:
            async for _ in client.iter_lists():
                pass
        assert client.stats.snapshot().api_calls == 3
    assert time.sleeps == [0.1, 0.2]
    assert API_KEY not in str(raised.value)
