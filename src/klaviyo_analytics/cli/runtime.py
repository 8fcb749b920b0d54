"""What every command's entry point sets up for itself: logging and signals. Resources come
from `wiring`."""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["configure_logging", "stop_on_sigterm"]

logger = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Send log records to stderr at the configured level (entry points only)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; ours are logged by the client at DEBUG already.
    logging.getLogger("httpx").setLevel(logging.WARNING)


@contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into a clean exit (status 0) that runs every `with` block's cleanup.

    Without this, SIGTERM kills the process outright, and uvicorn (which catches it while it
    serves) re-raises it after its own shutdown: the embedded PostgreSQL this process started
    would be left running either way.
    """

    def terminate(signum: int, frame: object) -> None:
        logger.info("SIGTERM received: shutting down")
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
