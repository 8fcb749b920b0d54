"""What every command's entry point sets up for itself: logging. Resources come from `wiring`."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(level: str) -> None:
    """Send log records to stderr at the configured level (entry points only)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # httpx logs every request URL at INFO; ours are logged by the client at DEBUG already.
    logging.getLogger("httpx").setLevel(logging.WARNING)
