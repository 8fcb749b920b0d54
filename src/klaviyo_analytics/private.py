"""Keep local data private: folders 0700, files 0600, and a server user let through, no one else.

Backups, the WAL archive and the home folder hold every customer's email and the API key
hashes. When we run as root the embedded PostgreSQL runs as its own system user, which must
reach its data folder: the folders on the way get only what it needs (a private folder of ours
is given to its group with 0710, any other folder gains o+x, never o+r).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700
PRIVATE_UMASK = 0o077  # for the programs we run: what they create is 0600 / 0700


def private_dir(path: Path) -> Path:
    """Create folder `path` (and missing parents, also 0700) and take every right from others.

    A group traversal bit granted to the server's user (see `allow_traversal`) is kept.
    Folders owned by someone else are left alone.
    """
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    for folder in [*missing, path]:
        info = folder.stat()
        if info.st_uid != os.geteuid():
            continue
        handed_over = folder not in missing and info.st_gid != os.getegid()
        keep = stat.S_IMODE(info.st_mode) & stat.S_IXGRP if handed_over else 0
        folder.chmod(DIR_MODE | keep)
    return path


def private_file(path: Path) -> None:
    """Make file `path` readable and writable by its owner only."""
    path.chmod(FILE_MODE)


def allow_traversal(path: Path, user: str) -> None:
    """Let system user `user` traverse every folder above `path`, giving no one else more.

    A folder closed to group and others (ours, 0700) is handed to the user's group with 0710;
    any other folder the user cannot pass gains only o+x (enter, not list).
    """
    entry = pwd.getpwnam(user)
    gid = entry.pw_gid
    groups = {gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)}
    for folder in path.resolve().parents:
        info = folder.stat()
        mode = stat.S_IMODE(info.st_mode)
        if (
            info.st_uid == entry.pw_uid
            or (info.st_gid in groups and mode & stat.S_IXGRP)
            or mode & stat.S_IXOTH
        ):
            continue
        if mode & 0o067 == 0 and info.st_uid == os.geteuid():
            os.chown(folder, -1, gid)
            folder.chmod(mode | stat.S_IXGRP)
        else:
            folder.chmod(mode | stat.S_IXOTH)
