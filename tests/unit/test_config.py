"""Settings: the original defaults, embedded detection, and errors that name the variable."""

from __future__ import annotations

import pytest

from klaviyo_analytics.config import load_settings
from klaviyo_analytics.errors import ConfigurationError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "DB_HOST",
        "DB_PASSWORD",
        "DB_MIN_CONNECTIONS",
        "DB_MAX_CONNECTIONS",
        "ACCOUNT_TIMEZONE",
        "KLAVIYO_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)


def test_defaults_match_the_original_design() -> None:
    s = load_settings()
    assert (s.db_host, s.db_port, s.db_user, s.db_name) == (
        "localhost",
        5432,
        "klaviyo",
        "klaviyo_analytics",
    )
    assert s.db_password.get_secret_value() == "klaviyo_pass"
    assert (s.db_max_connections, s.db_min_connections) == (50, 5)
    assert (s.db_idle_timeout_ms, s.db_connection_timeout_ms, s.db_statement_timeout_ms) == (
        30000,
        5000,
        30000,
    )
    assert (
        s.db_max_retries,
        s.db_initial_retry_delay_ms,
        s.db_max_retry_delay_ms,
        s.db_retry_factor,
    ) == (3, 100, 3000, 2)
    assert (s.backup_retention_days, s.max_hourly_backups, s.max_daily_backups) == (30, 24, 7)
    assert (s.max_weekly_backups, s.max_monthly_backups) == (4, 12)
    assert s.klaviyo_base_url == "https://a.klaviyo.com"


def test_environment_names_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_IDLE_TIMEOUT", "1234")
    monkeypatch.setenv("DB_SSL", "true")
    s = load_settings()
    assert s.db_idle_timeout_ms == 1234 and s.db_ssl is True


def test_embedded_database_is_used_only_without_database_url_and_db_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings().uses_embedded_database
    monkeypatch.setenv("DB_HOST", "db.internal")
    assert not load_settings().uses_embedded_database
    monkeypatch.delenv("DB_HOST")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@h/d")
    assert not load_settings().uses_embedded_database


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DB_MAX_CONNECTIONS": "-1"}, "DB_MAX_CONNECTIONS"),
        (
            {"DB_MIN_CONNECTIONS": "60"},
            "DB_MIN_CONNECTIONS (60) must not exceed DB_MAX_CONNECTIONS (50)",
        ),
        ({"ACCOUNT_TIMEZONE": "Mars/Olympus"}, "ACCOUNT_TIMEZONE: unknown time zone"),
        ({"DB_PORT": "seventy"}, "DB_PORT"),
        ({"SCHEDULES": "{not json"}, "SCHEDULES: not valid JSON"),
    ],
)
def test_invalid_settings_are_refused_with_the_variable_name(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigurationError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_settings()


def test_secrets_never_appear_in_errors_or_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("KLAVIYO_API_KEY", "pk_live_secret")
    assert "hunter2-secret" not in repr(load_settings())
    assert "pk_live_secret" not in repr(load_settings())
    monkeypatch.setenv("DB_MIN_CONNECTIONS", "99")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "hunter2-secret" not in str(caught.value) and "pk_live_secret" not in str(caught.value)
