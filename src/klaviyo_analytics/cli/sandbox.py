"""`klaviyo-analytics sandbox`: serve the Klaviyo-compatible sandbox on 127.0.0.1."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

import typer

from klaviyo_analytics.errors import ConfigurationError
from klaviyo_analytics.sandbox.config import (
    DEFAULT_API_KEY,
    DEFAULT_END,
    FaultOptions,
    SandboxConfig,
    StoreOptions,
)

logger = logging.getLogger(__name__)


def sandbox_command(
    port: Annotated[
        int, typer.Option(min=1, max=65535, help="Port to listen on (127.0.0.1).")
    ] = 8765,
    seed: Annotated[int, typer.Option(help="Seed of the generated store.")] = 1,
    profiles: Annotated[int, typer.Option(help="Number of profiles.")] = 2_000,
    days: Annotated[int, typer.Option(help="Days of event history before --end.")] = 60,
    campaigns: Annotated[int, typer.Option(help="Number of sent campaigns (1 in 4 SMS).")] = 12,
    flows: Annotated[int, typer.Option(help="Number of flows (welcome, cart, ... cycled).")] = 5,
    end: Annotated[
        str, typer.Option(help="The store's 'now' (ISO 8601, timezone-aware).")
    ] = DEFAULT_END.isoformat(),
    api_key: Annotated[str, typer.Option(help="The private API key the sandbox accepts.")] = (
        DEFAULT_API_KEY
    ),
    rate_limits: Annotated[
        bool, typer.Option("--rate-limits/--no-rate-limits", help="Enforce the spec's limits.")
    ] = True,
    rate_limit_scale: Annotated[
        float, typer.Option(help="Multiply every rate limit (2.0 allows twice as many).")
    ] = 1.0,
    latency_ms: Annotated[int, typer.Option(help="Latency added to every /api/ request.")] = 0,
    latency_jitter_ms: Annotated[int, typer.Option(help="Random extra latency, up to this.")] = 0,
    fault_429: Annotated[float, typer.Option(help="Probability of an injected 429.")] = 0.0,
    fault_500: Annotated[float, typer.Option(help="Probability of an injected 500.")] = 0.0,
    fault_503: Annotated[float, typer.Option(help="Probability of an injected 503.")] = 0.0,
    fault_timeout: Annotated[
        float, typer.Option(help="Probability of hanging for --timeout-s before a 504.")
    ] = 0.0,
    timeout_s: Annotated[float, typer.Option(help="How long an injected timeout hangs.")] = 30.0,
    fault_malformed: Annotated[
        float, typer.Option(help="Probability of a malformed JSON body.")
    ] = 0.0,
    fault_truncated: Annotated[
        float, typer.Option(help="Probability of a truncated JSON body.")
    ] = 0.0,
    fault_reset: Annotated[
        float, typer.Option(help="Probability of dropping the connection without answering.")
    ] = 0.0,
    fault_seed: Annotated[
        int | None, typer.Option(help="Seed of the fault draws (repeatable faults).")
    ] = None,
    live: Annotated[
        bool, typer.Option("--live/--static", help="Let the store's clock follow wall time.")
    ] = False,
) -> None:
    """Serve a deterministic, Klaviyo-compatible store for syncs, demos and benchmarks."""
    try:
        config = SandboxConfig(
            store=StoreOptions(
                seed=seed, profiles=profiles, days=days, campaigns=campaigns, flows=flows,
                end=datetime.fromisoformat(end.replace("Z", "+00:00")),
            ),
            api_key=api_key, rate_limits=rate_limits, rate_limit_scale=rate_limit_scale, live=live,
            faults=FaultOptions(
                latency_ms=latency_ms, latency_jitter_ms=latency_jitter_ms, p429=fault_429,
                p500=fault_500, p503=fault_503, p_timeout=fault_timeout, timeout_s=timeout_s,
                p_malformed=fault_malformed, p_truncated=fault_truncated, p_reset=fault_reset,
                seed=fault_seed,
            ),
        )  # fmt: skip
    except (ConfigurationError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    # Imported here: FastAPI, uvicorn and the sandbox's NumPy cost every other command 0.5 s.
    import uvicorn

    from klaviyo_analytics.sandbox.app import create_sandbox_app

    app = create_sandbox_app(config)
    typer.echo(f"Klaviyo sandbox on http://127.0.0.1:{port} (API key {config.api_key})")
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, timeout_graceful_shutdown=1)


def register(app: typer.Typer) -> None:
    """Add the `sandbox` command to the command line."""
    app.command("sandbox")(sandbox_command)
