"""Schemathesis against the app's own OpenAPI: no generated request makes the server answer 500.

Hypothesis runs in a worker thread (it is synchronous); each generated case is sent through the
app's ASGI transport on the test's event loop, where the app's lifespan and pool live.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case

from tests.integration.api.conftest import Api

EXAMPLES_PER_OPERATION = 12
# Operations that would change the test's own setup (start syncs, revoke its keys).
SKIPPED = {("POST", "/api/sync/{stream}"), ("DELETE", "/api/keys/{key_id}")}


# schemathesis draws from `random` inside its strategies, which Hypothesis deprecates.
@pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module:hypothesis.errors.HypothesisDeprecationWarning"
)
async def test_no_generated_request_gets_a_500_and_every_error_has_the_one_shape(
    api: Api,
) -> None:
    schema = schemathesis.openapi.from_dict(api.app.openapi())
    loop = asyncio.get_running_loop()
    failures: list[str] = []
    counts: dict[str, int] = {}

    async def send(case: Case) -> None:
        kwargs = case.as_transport_kwargs(base_url="http://api.test")
        headers = {**kwargs.get("headers", {}), **api.admin}
        response = await api.http.request(
            kwargs["method"],
            kwargs["url"],
            params=kwargs.get("params"),
            headers=headers,
            json=kwargs.get("json"),
        )
        key = f"{case.method} {case.path}"
        counts[key] = counts.get(key, 0) + 1
        if response.status_code >= 500:
            failures.append(
                f"{key} {kwargs.get('params')} -> {response.status_code} {response.text}"
            )
        elif response.status_code >= 400:
            error = response.json().get("error", {})
            if set(error) != {"code", "message", "details"}:
                failures.append(f"{key} -> {response.status_code} without the error shape")

    def fuzz(operation: Any) -> None:
        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Case) -> None:
            asyncio.run_coroutine_threadsafe(send(case), loop).result(timeout=60)

        run()

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        await asyncio.to_thread(fuzz, operation)
    assert not failures, "\n".join(failures[:20])
    assert len(counts) >= 25, sorted(counts)
