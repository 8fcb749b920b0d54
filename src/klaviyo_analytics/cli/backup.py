"""The `backup` commands: create, list, verify, restore, rotate, and point-in-time recovery."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from psycopg.conninfo import conninfo_to_dict
from rich.console import Console
from rich.table import Table

from klaviyo_analytics.backup import archiving, pitr
from klaviyo_analytics.backup.dump import create_backup
from klaviyo_analytics.backup.errors import BackupError, RecoveryError
from klaviyo_analytics.backup.metadata import (
    DUMP_SUFFIX,
    KEY_FILE,
    KINDS,
    backup_stats,
    check_kind,
    list_backups,
    utc_now,
)
from klaviyo_analytics.backup.restore import restore_backup
from klaviyo_analytics.backup.rotate import RetentionPolicy, rotate
from klaviyo_analytics.backup.verify import trust_backup, verify_backup
from klaviyo_analytics.cli.common import fail_cleanly, load
from klaviyo_analytics.config import Settings
from klaviyo_analytics.db.databases import ensure_database
from klaviyo_analytics.db.embedded import EmbeddedPostgres
from klaviyo_analytics.db.pool import describe_target
from klaviyo_analytics.errors import KlaviyoAnalyticsError
from klaviyo_analytics.wiring import database_server, external_conninfo

logger = logging.getLogger(__name__)
console = Console()

backup_app = typer.Typer(
    help="Create, list, verify and restore backups; point-in-time recovery.",
    no_args_is_help=True,
)
pitr_app = typer.Typer(
    help="Point-in-time recovery: WAL archiving, base backups, recovery.", no_args_is_help=True
)
backup_app.add_typer(pitr_app, name="pitr")


def policy_of(settings: Settings) -> RetentionPolicy:
    """Return the rotation policy described by the MAX_*_BACKUPS and retention settings."""
    return RetentionPolicy(
        max_hourly=settings.max_hourly_backups,
        max_daily=settings.max_daily_backups,
        max_weekly=settings.max_weekly_backups,
        max_monthly=settings.max_monthly_backups,
        retention_days=settings.backup_retention_days,
    )


@backup_app.command("create")
def create_command(
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(KINDS)}.")] = "daily",
    test: Annotated[
        bool, typer.Option("--test", help="Also restore into a scratch database and compare.")
    ] = False,
    verify: Annotated[bool, typer.Option(help="Verify the new backup.")] = True,
    do_rotate: Annotated[
        bool,
        typer.Option("--rotate/--no-rotate", help="Delete backups the policy no longer keeps."),
    ] = True,
) -> None:
    """Dump the database (pg_dump custom format) into BACKUP_DIR/<kind>/ and verify it."""
    settings = load()
    with fail_cleanly():
        check_kind(kind)
        with database_server(settings) as conninfo:
            result = create_backup(
                conninfo=conninfo,
                backup_dir=settings.backup_path,
                kind=kind,
                verify=verify,
                trial_restore=test,
            )
        info = result.info
        console.print(
            f"backup written: [bold]{info.path}[/bold] ({human_size(info.size_bytes)}, "
            f"{info.duration_s:.2f}s, {len(info.row_counts)} tables, "
            f"{sum(info.row_counts.values()):,} rows)",
            highlight=False,
            soft_wrap=True,
        )
        if result.verification is not None:
            how = "checksum, contents and trial restore" if test else "checksum and contents"
            console.print(f"verified: {how}")
        if do_rotate:
            _report_rotation(settings, dry_run=False)


@backup_app.command("list")
def list_command() -> None:
    """List the backups in BACKUP_DIR, newest first."""
    settings = load()
    with fail_cleanly():
        backups = list_backups(settings.backup_path)
        now = utc_now()
        table = Table("kind", "created (UTC)", "size", "verified", "age", "database", "file")
        for b in backups:
            table.add_row(
                b.kind,
                b.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                human_size(b.size_bytes),
                ("yes, restored" if b.trial_restored else "yes")
                if b.verified
                else "[yellow]no[/yellow]",
                human_age(b.age_s(now)),
                b.database,
                b.path.name,
            )
        console.print(table)
        stats = backup_stats(settings.backup_path)
        console.print(
            f"{len(backups)} backup(s) in {settings.backup_path}; runs: {stats.successes} ok, "
            f"{stats.failures} failed",
            highlight=False,
        )


@backup_app.command("verify")
def verify_command(
    file: Annotated[
        Path, typer.Argument(help="The backup file (a path, or a name in BACKUP_DIR).")
    ],
    test: Annotated[
        bool, typer.Option("--test", help="Also restore into a scratch database and compare.")
    ] = False,
) -> None:
    """Check a backup's checksum and table of contents (and with --test, a trial restore)."""
    settings = load()
    with fail_cleanly():
        path = resolve_backup(settings, file)
        key = settings.backup_path / KEY_FILE  # ours, wherever the file lies
        if test:
            with database_server(settings) as conninfo:
                report = verify_backup(path, trial_conninfo=conninfo, key_file=key)
        else:
            report = verify_backup(path, key_file=key)
        extra = ", trial restore matched every row count" if report.trial_restored else ""
        console.print(
            f"backup {path} is good: checksum ok, {report.tables_listed} tables listed{extra}",
            highlight=False,
        )


@backup_app.command("trust")
def trust_command(
    file: Annotated[
        Path, typer.Argument(help="The backup file (a path, or a name in BACKUP_DIR).")
    ],
    yes: Annotated[
        bool,
        typer.Option("--yes", help="Confirm that you know where this backup came from."),
    ] = False,
) -> None:
    """Sign a backup made by an older version or another machine, so it can be verified and
    restored here. Only for backups you know the origin of: restoring runs what the dump holds.
    """
    settings = load()
    with fail_cleanly():
        path = resolve_backup(settings, file)
        if not yes:
            raise BackupError(
                f"signing {path.name} makes this machine trust what it holds; "
                "run again with --yes if you know where it came from"
            )
        info = trust_backup(path, key_file=settings.backup_path / KEY_FILE)
        console.print(
            f"signed {path.name} (a {info.kind} backup of {info.database} from "
            f"{info.created_at:%Y-%m-%d %H:%M} UTC, checksum ok); verify it next",
            highlight=False,
        )


@backup_app.command("restore")
def restore_command(
    file: Annotated[
        Path, typer.Argument(help="The backup file (a path, or a name in BACKUP_DIR).")
    ],
    new_db: Annotated[
        str | None,
        typer.Option("--new-db", help="Restore into this new database; the live one is untouched."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="End the live database's sessions if there are any.")
    ] = False,
) -> None:
    """Verify a backup, then restore it over the live database or into a new one."""
    settings = load()
    with fail_cleanly():
        path = resolve_backup(settings, file)
        with database_server(settings) as conninfo:
            result = restore_backup(
                path,
                conninfo=conninfo,
                new_db=new_db,
                force=force,
                key_file=settings.backup_path / KEY_FILE,
            )
        where = "over" if result.replaced_live else "into new"
        ended = f"; ended {result.sessions_ended} session(s)" if result.sessions_ended else ""
        console.print(
            f"restored {path.name} {where} database {result.database} in "
            f"{result.duration_s:.2f}s{ended}",
            highlight=False,
        )


@backup_app.command("rotate")
def rotate_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
) -> None:
    """Delete backups beyond MAX_<KIND>_BACKUPS or older than BACKUP_RETENTION_DAYS."""
    settings = load()
    with fail_cleanly():
        _report_rotation(settings, dry_run=dry_run)


@pitr_app.command("setup")
def pitr_setup_command() -> None:
    """Turn on WAL archiving into BACKUP_DIR/wal/ and take a base backup.

    A server we do not run is set with ALTER SYSTEM when our login may; its administrator then
    restarts it, and this command is run again.
    """
    settings = load()
    wal_dir = archiving.wal_dir_of(settings.backup_path)
    with fail_cleanly():
        if settings.uses_embedded_database:
            with EmbeddedPostgres(settings.embedded_data_dir) as server:
                ensure_database(server.conninfo("postgres"), settings.db_name)
                if archiving.enable_embedded_archiving(server, wal_dir):
                    console.print("embedded server restarted with WAL archiving on")
                base = pitr.take_base_backup(
                    conninfo=server.conninfo(settings.db_name), backup_dir=settings.backup_path
                )
        else:
            with database_server(settings) as conninfo:
                setup = archiving.enable_server_archiving(conninfo, wal_dir)
                if setup.restart_needed:
                    raise RecoveryError(
                        f"WAL archiving into {wal_dir} is set on {describe_target(conninfo)} "
                        "(ALTER SYSTEM); archive_mode takes effect when the server starts: "
                        "restart it, then run `backup pitr setup` again"
                    )
                segment = archiving.check_archive(conninfo, wal_dir)
                console.print(f"the server archives WAL into {wal_dir} (up to {segment})")
                base = pitr.take_base_backup(conninfo=conninfo, backup_dir=settings.backup_path)
        console.print(f"WAL archive: {wal_dir}")
        console.print(f"base backup: [bold]{base.path}[/bold]", highlight=False)
        if base.timescaledb:
            console.print(
                f"TimescaleDB {base.timescaledb}: a recovery needs the same version installed"
            )


@pitr_app.command("restore")
def pitr_restore_command(
    to: Annotated[
        str, typer.Option("--to", help='Target time with zone, "2026-11-20 14:05:00+00".')
    ],
    target_dir: Annotated[Path, typer.Option(help="An empty folder for the recovered server.")],
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Also listen on localhost:PORT.")
    ] = None,
    switch_wal: Annotated[
        bool,
        typer.Option(help="Ask the live server to archive its current WAL segment first."),
    ] = True,
) -> None:
    """Recover the database as it was at a past time into a new folder and start a server there."""
    settings = load()
    with fail_cleanly():
        target = parse_time(to)
        if switch_wal:
            _switch_live_wal(settings)
        server = pitr.recover_to(
            backup_dir=settings.backup_path, target_time=target, target_dir=target_dir, port=port
        )
        console.print(
            f"recovered to {target.isoformat()} from base backup {server.base.path.name} "
            f"in {server.duration_s:.1f}s",
            highlight=False,
        )
        console.print(
            f'connect: psql "{server.conninfo(_db_name(settings))}"',
            highlight=False,
            soft_wrap=True,
        )
        if port:
            console.print(f"     or: psql -h localhost -p {port} -U {server.user}", soft_wrap=True)
        console.print(
            f"stop:    klaviyo-analytics backup pitr stop --target-dir {server.data_dir}",
            highlight=False,
            soft_wrap=True,
        )


@pitr_app.command("stop")
def pitr_stop_command(
    target_dir: Annotated[Path, typer.Option(help="The folder given to `pitr restore`.")],
) -> None:
    """Stop a server started by `backup pitr restore`."""
    load()
    with fail_cleanly():
        pitr.stop_server(target_dir.resolve())
        console.print(f"stopped the server in {target_dir}")


def _db_name(settings: Settings) -> str:
    """Return the application database's name (DATABASE_URL's own, when it names one)."""
    if settings.uses_embedded_database:
        return settings.db_name
    return str(conninfo_to_dict(external_conninfo(settings)).get("dbname") or settings.db_name)


def _switch_live_wal(settings: Settings) -> None:
    # Best effort: without it, the newest WAL (up to archive_timeout old) may not be archived.
    try:
        with database_server(settings) as conninfo:
            if archiving.archiving_enabled(conninfo):
                segment = archiving.switch_wal(conninfo)
                console.print(f"archived the live server's WAL up to {segment}")
    except KlaviyoAnalyticsError as exc:
        logger.warning("could not archive the live server's current WAL: %s", exc)


def _report_rotation(settings: Settings, *, dry_run: bool) -> None:
    result = rotate(settings.backup_path, policy=policy_of(settings), dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for info in result.deleted:
        console.print(f"{verb} {info.path.name}", highlight=False)
    if result.protected is not None:
        console.print(f"kept {result.protected.path.name}: the only verified backup")
    console.print(f"rotation: {len(result.kept)} kept, {len(result.deleted)} {verb}")


def resolve_backup(settings: Settings, file: Path) -> Path:
    """Return the backup file meant by `file`: a path, or a file name inside BACKUP_DIR.

    Raises BackupError naming the file when it cannot be found.
    """
    if file.is_file():
        return file.resolve()
    if file.suffix == DUMP_SUFFIX and len(file.parts) == 1:
        for kind in KINDS:
            candidate = settings.backup_path / kind / file.name
            if candidate.is_file():
                return candidate
    raise BackupError(f"backup file {file} does not exist (nor in {settings.backup_path})")


def parse_time(text: str) -> datetime:
    """Parse an ISO 8601 time with a zone.

    Raises RecoveryError for anything else.
    """
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise RecoveryError(f"cannot read time {text!r}: use ISO 8601 with a zone") from None
    if value.tzinfo is None:
        raise RecoveryError(f"time {text!r} has no zone: add one, e.g. +00")
    return value


def human_size(n: int) -> str:
    """Return a byte count as B, KiB, MiB, ..."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_age(seconds: float) -> str:
    """Return an age as `3m`, `5h`, `2d`."""
    if seconds < 3600:
        return f"{max(0, int(seconds // 60))}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"
