"""A scratch database for a benchmark: migrated, on DATABASE_URL's server or a fresh embedded
PostgreSQL, dropped (and the embedded server stopped) when the benchmark ends."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from psycopg.conninfo import make_conninfo

from klaviyo_analytics.db import databases
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.migrate import migrate


def server_label() -> str:
    """Say which server the scratch database lives on."""
    return "DATABASE_URL" if os.environ.get("DATABASE_URL") else "embedded PostgreSQL"


@contextmanager
def scratch_database(prefix: str = "bench") -> Iterator[str]:
    """Yield the connection string of a new, migrated database; drop it afterwards."""
    url = os.environ.get("DATABASE_URL")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as tmp:
        server = None if url else EmbeddedPostgres(Path(tmp) / "pgdata").start()
        admin = url or server.conninfo()  # type: ignore[union-attr]
        try:
            databases.create_database(admin, name)
            target = make_conninfo(admin, dbname=name)
            asyncio.run(migrate(target))
            yield target
        finally:
            databases.drop_database(admin, name)
            if server is not None:
                server.stop()
