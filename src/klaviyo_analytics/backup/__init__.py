"""Backups and recovery: dumps, verification, rotation, restore, point-in-time recovery.

Everything here runs PostgreSQL's own programs (pg_dump, pg_restore, pg_basebackup, pg_ctl) as
argument lists, never through a shell, with the password in the environment only.
"""
