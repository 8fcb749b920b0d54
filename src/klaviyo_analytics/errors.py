"""The root of the project's exceptions.

Whether an error is worth retrying is a property of its class (`retryable`), so callers never
inspect messages or status codes to decide.
"""

from __future__ import annotations


class KlaviyoAnalyticsError(Exception):
    """Base class of every error this project raises on purpose."""

    retryable: bool = False


class RetryableError(KlaviyoAnalyticsError):
    """A transient failure: the same call may succeed later."""

    retryable = True


class FatalError(KlaviyoAnalyticsError):
    """A failure that will not go away by trying again."""

    retryable = False


class ConfigurationError(FatalError):
    """A setting is missing or invalid."""


class DatabaseError(KlaviyoAnalyticsError):
    """A database operation failed."""


class DatabaseUnavailableError(DatabaseError, RetryableError):
    """The database server could not be reached or dropped the connection."""


class MigrationError(DatabaseError, FatalError):
    """A migration could not be applied, or the applied history does not match the files."""


class NotFoundError(FatalError):
    """A requested record does not exist."""
