"""What every command shares: loading settings and turning our errors into clean exits."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console

from klaviyo_analytics.cli.runtime import configure_logging
from klaviyo_analytics.config import Settings, load_settings
from klaviyo_analytics.errors import ConfigurationError, KlaviyoAnalyticsError

err_console = Console(stderr=True)

EXIT_CONFIG = 2
EXIT_FAILURE = 1


def load() -> Settings:
    """Read the settings and configure logging; exit with status 2 on an invalid setting."""
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        # One line however long: scripts and log collectors read it whole.
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    configure_logging(settings.log_level)
    return settings


@contextmanager
def fail_cleanly() -> Iterator[None]:
    """Turn the project's own errors into one red line and exit status 1, without a traceback."""
    try:
        yield
    except KlaviyoAnalyticsError as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILURE) from None
