"""One typed Settings class, read once at start in an entry point and passed down.

Variable names keep the original design's environment names (`DB_IDLE_TIMEOUT`, ...); the
Python field names carry their units (`db_idle_timeout_ms`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from klaviyo_analytics.conninfo import parse_conninfo
from klaviyo_analytics.errors import ConfigurationError

DEFAULT_HOME = Path("~/.klaviyo-analytics")


class Settings(BaseSettings):
    """Every setting of the application, validated at start."""

    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, frozen=True
    )

    # Local data (embedded database, backups by default).
    data_home: Path = Field(default=DEFAULT_HOME, validation_alias="KLAVIYO_ANALYTICS_HOME")

    # Database.
    database_url: SecretStr | None = Field(default=None)
    db_host: str = Field(default="localhost")
    db_port: int = Field(default=5432, ge=1, le=65535)
    db_user: str = Field(default="klaviyo")
    db_password: SecretStr = Field(default=SecretStr("klaviyo_pass"))
    db_reader_password: SecretStr | None = Field(default=None)
    db_name: str = Field(default="klaviyo_analytics")
    db_ssl: bool = Field(default=False)
    db_max_connections: int = Field(default=50, ge=1)
    db_min_connections: int = Field(default=5, ge=0)
    db_idle_timeout_ms: int = Field(default=30_000, ge=1, validation_alias="DB_IDLE_TIMEOUT")
    db_connection_timeout_ms: int = Field(
        default=5_000,
        ge=1,
        validation_alias="DB_CONNECTION_TIMEOUT",
    )
    db_statement_timeout_ms: int = Field(
        default=30_000,
        ge=0,
        validation_alias="DB_STATEMENT_TIMEOUT",
    )
    db_max_retries: int = Field(default=3, ge=0)
    db_initial_retry_delay_ms: int = Field(
        default=100,
        ge=0,
        validation_alias="DB_INITIAL_RETRY_DELAY",
    )
    db_max_retry_delay_ms: int = Field(default=3_000, ge=0, validation_alias="DB_MAX_RETRY_DELAY")
    db_retry_factor: float = Field(default=2.0, ge=1.0)
    db_slow_query_ms: int = Field(default=500, ge=0)

    # Backups.
    backup_dir: Path | None = Field(default=None)
    backup_retention_days: int = Field(default=30, ge=1)
    max_hourly_backups: int = Field(default=24, ge=0)
    max_daily_backups: int = Field(default=7, ge=0)
    max_weekly_backups: int = Field(default=4, ge=0)
    max_monthly_backups: int = Field(default=12, ge=0)

    # Retention (TimescaleDB policies, or the maintenance job without it).
    retention_raw_responses_days: int = Field(default=30, ge=1)
    retention_events_months: int = Field(default=12, ge=1)
    retention_aggregates_months: int = Field(default=24, ge=1)
    retention_predictions_months: int = Field(default=6, ge=1)

    # Klaviyo.
    klaviyo_api_key: SecretStr | None = Field(default=None)
    klaviyo_base_url: str = Field(default="https://a.klaviyo.com")
    sync_concurrency: int = Field(default=16, ge=1, le=64)
    sync_backfill_days: int = Field(default=365, ge=1, le=3650)
    archive_raw_responses: bool = Field(default=False)
    profile_predictions: bool = Field(default=True)
    schedules: dict[str, str] = Field(default_factory=dict)
    scheduler_timezone: str = Field(default="UTC")
    account_timezone: str | None = Field(default=None)

    # Optional services.
    redis_url: SecretStr | None = Field(default=None)
    log_level: str = Field(default="INFO")

    # The REST API (`klaviyo-analytics serve`).
    api_rate_limit_per_minute: int = Field(default=300, ge=1)
    cache_ttl_s: int = Field(default=300, ge=0)
    cache_max_entries: int = Field(default=1000, ge=1)
    cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    auth_failures_per_minute: int = Field(default=30, ge=1)
    # Worker processes for STL, forecast fits and anomaly scans (each ~130 MiB once warm).
    analysis_workers: int = Field(default=2, ge=1, le=32)
    metrics_require_key: bool = Field(default=False)
    api_docs_enabled: bool = Field(default=False)
    stale_after_minutes: int = Field(default=1440, ge=1)
    backup_stale_after_hours: int = Field(default=48, ge=1)
    min_free_disk_mb: int = Field(default=1024, ge=0)
    max_replica_lag_s: int = Field(default=300, ge=0)

    @field_validator("account_timezone", "scheduler_timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parse_conninfo(value.get_secret_value())
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError(f"unknown level {value!r}")
        return level

    @field_validator("klaviyo_base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.db_min_connections > self.db_max_connections:
            raise ValueError(
                "DB_MIN_CONNECTIONS "
                f"({self.db_min_connections}) must not exceed DB_MAX_CONNECTIONS ({self.db_max_connections})"
            )
        if self.db_initial_retry_delay_ms > self.db_max_retry_delay_ms:
            raise ValueError(
                f"DB_INITIAL_RETRY_DELAY ({self.db_initial_retry_delay_ms}) must not exceed "
                f"DB_MAX_RETRY_DELAY ({self.db_max_retry_delay_ms})"
            )
        return self

    @property
    def home_dir(self) -> Path:
        """The expanded home directory for local data."""
        return self.data_home.expanduser()

    @property
    def uses_embedded_database(self) -> bool:
        """Whether neither DATABASE_URL nor DB_HOST was given, so the embedded server is used."""
        return self.database_url is None and "db_host" not in self.model_fields_set

    @property
    def embedded_data_dir(self) -> Path:
        """Where the embedded PostgreSQL keeps its data between runs."""
        return self.home_dir / "pgdata"

    @property
    def backup_path(self) -> Path:
        """Where backups are written (BACKUP_DIR, or `backups` under the home directory)."""
        return (self.backup_dir or self.home_dir / "backups").expanduser()


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, with explicit overrides on top.

    Raises ConfigurationError naming each invalid variable; the offending values are not
    repeated, since they may be secrets.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(describe_settings_error(exc)) from None
    except SettingsError as exc:
        # A structured variable (SCHEDULES) that is not JSON fails before validation.
        raise ConfigurationError(describe_source_error(exc)) from None


def describe_source_error(exc: SettingsError) -> str:
    """Return the variable a source could not parse as JSON, never its value."""
    found = re.search(r'field "([^"]+)"', str(exc))
    name = found.group(1).upper() if found else "a setting"
    return f"invalid setting {name}: not valid JSON"


def describe_settings_error(exc: ValidationError) -> str:
    """Return one line per problem, naming the variable but never its value."""
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(part) for part in error["loc"]).upper() or "settings"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"invalid setting {where}: {message}" if where != "settings" else message)
    return "; ".join(lines)
