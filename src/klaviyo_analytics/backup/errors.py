"""The errors of backup and recovery; every message names the file or database involved."""

from __future__ import annotations

from klaviyo_analytics.errors import FatalError


class BackupError(FatalError):
    """A backup, verification, rotation or restore failed."""


class ToolNotFoundError(BackupError):
    """No PostgreSQL client program of a suitable version was found."""


class BackupWriteError(BackupError):
    """A backup could not be written (disk full, permissions); nothing partial was left."""


class BackupCorruptError(BackupError):
    """A backup file failed verification (checksum, table of contents or trial restore)."""


class RestoreRefusedError(BackupError):
    """A restore was refused before anything changed (active connections, newer server)."""


class RecoveryError(BackupError):
    """Point-in-time recovery could not be set up or did not reach its target."""
