"""The profiles cursor moves with every stored page (profiles are read sorted by `updated`)."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from klaviyo_analytics.klaviyo import KlaviyoBadRequestError
from klaviyo_analytics.retry import RetryPolicy
from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.sync import sync_service


class _CutAfter(httpx.AsyncBaseTransport):
    """Pass requests to the real sandbox, and refuse profile pages after the first `pages`."""

    def __init__(self, pages: int) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.left = pages

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.rstrip("/") == "/api/profiles":
            if self.left == 0:
                return httpx.Response(400, json={"errors": [{"detail": "cut"}]})
            self.left -= 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def _stored(conninfo: str) -> tuple[int, str | None, str | None]:
    with psycopg.connect(conninfo) as conn:
        count, newest = conn.execute(
            "SELECT count(*), max(updated) FROM klaviyo_profiles"
        ).fetchone()  # type: ignore[misc]
        row = conn.execute(
            "SELECT cursor_value FROM sync_state WHERE stream = 'profiles'"
        ).fetchone()
    return int(count), newest, row[0] if row else None


async def test_a_stopped_profile_sync_resumes_after_its_last_stored_page(
    db_conninfo: str, sandbox: SandboxServer
) -> None:
    total = sandbox.generator.options.profiles
    retry = RetryPolicy(attempts=1, base_s=0.01, cap_s=0.01)
    async with sync_service(db_conninfo, sandbox, transport=_CutAfter(2), retry=retry) as service:
        with pytest.raises(KlaviyoBadRequestError):
            await service.run("profiles")
    count, newest, cursor = _stored(db_conninfo)
    assert count == 200  # two pages of 100
    assert cursor is not None and newest is not None
    with psycopg.connect(db_conninfo) as conn:
        (same,) = conn.execute(
            "SELECT %s::timestamptz = max(updated) FROM klaviyo_profiles", (cursor,)
        ).fetchone()  # type: ignore[misc]
    assert same, (cursor, newest)  # the checkpoint is the newest stored `updated`

    async with sync_service(db_conninfo, sandbox) as service:
        resumed = await service.run("profiles")
    assert resumed.status == "succeeded"
    assert resumed.fetched < total  # only what was not stored, plus the cursor's second
    assert _stored(db_conninfo)[0] == total
