"""A database synced from the shared sandbox with the facts hook, copied for each test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio

from klaviyo_analytics.sandbox.server import SandboxServer
from tests.fixtures.database import PgServer
from tests.fixtures.sync import sync_service


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def synced_template(
    pg_server: PgServer, template_db: str, sandbox: SandboxServer
) -> AsyncIterator[str]:
    """A database the shared sandbox was synced into, facts refreshed by the sync's hook."""
    name = f"ka_an_{uuid.uuid4().hex[:12]}"
    conninfo = pg_server.create_database(name, template=template_db)
    async with sync_service(conninfo, sandbox) as service:
        await service.sync_all()
    pg_server.seal_template(name)
    yield name
    pg_server.drop_database(name)


@pytest.fixture
def synced_conninfo(pg_server: PgServer, synced_template: str) -> Iterator[str]:
    """This test's own copy of the synced database."""
    name = f"ka_t_{uuid.uuid4().hex[:12]}"
    pg_server.create_database(name, template=synced_template)
    yield pg_server.conninfo(name)
    pg_server.drop_database(name)
