"""`klaviyo-analytics serve`: migrate, then serve the REST API with uvicorn."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from klaviyo_analytics.cli.common import err_console, fail_cleanly, load
from klaviyo_analytics.cli.runtime import stop_on_sigterm
from klaviyo_analytics.db.migrate import migrate
from klaviyo_analytics.wiring import check_reachable, database_server


def serve_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
) -> None:
    """Apply pending migrations, then serve the REST API (docs/api.md) until Ctrl-C or SIGTERM."""
    # Imported here: the API pulls in FastAPI, uvicorn and the statistics stack, which cost
    # every other command 0.5 s and more.
    import uvicorn

    from klaviyo_analytics.api.app import create_app

    settings = load()
    with fail_cleanly(), stop_on_sigterm(), database_server(settings) as conninfo:
        asyncio.run(check_reachable(settings, conninfo))
        asyncio.run(migrate(conninfo))
        docs = (
            "/docs"
            if settings.api_docs_enabled
            else "/openapi.json; API_DOCS_ENABLED=true adds /docs"
        )
        err_console.print(
            f"serving the API on http://{host}:{port} (OpenAPI at {docs}); Ctrl-C stops",
            highlight=False,
        )
        # Logging is configured by `load()`; uvicorn must not replace it.
        uvicorn.run(create_app(settings, conninfo=conninfo), host=host, port=port, log_config=None)
