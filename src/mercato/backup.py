"""Backups of the embedded SQLite shop: an online copy while the shop runs, and putting one
back.

The copy is SQLite's online backup API (``sqlite3.Connection.backup``) in one step: it reads
one snapshot of the database, so the copy is consistent, and in WAL mode a reader never stops
the writers, so the shop keeps taking orders while it runs. The copy is written next to its
destination and renamed into place once checked (``PRAGMA integrity_check``), so a backup file
is either whole or absent. It is a single self-contained file (rollback journal, not WAL).

PostgreSQL shops back up with PostgreSQL's own tools (``pg_dump``, WAL archiving): see
``docs/operations.md``.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import make_url

from mercato.migrate import alembic_config, head_revision


class BackupError(RuntimeError):
    """A backup or restore that cannot be done, and why."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: Path
    revision: str | None
    """The migration revision the copy is at (None: no Mercato schema)."""
    size: int


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite database URL; None for any other database."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    return Path(parsed.database)


def _check(conn: sqlite3.Connection, name: str) -> str | None:
    problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    if problems != ["ok"]:
        raise BackupError(f"{name} is damaged: {'; '.join(problems[:5])}")
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError:
        return None
    return None if row is None else str(row[0])


def inspect(path: Path) -> BackupInfo:
    """A backup file's integrity and migration revision; :class:`BackupError` when it is not
    a readable, undamaged SQLite database."""
    if not path.is_file():
        raise BackupError(f"{path} does not exist")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            revision = _check(conn, str(path))
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database ({exc})") from exc
    return BackupInfo(path, revision, path.stat().st_size)


def backup(source: Path, destination: Path) -> BackupInfo:
    """Copy the running shop's database ``source`` to ``destination`` (replaced if present)."""
    if not source.is_file():
        raise BackupError(f"{source} does not exist")
    if destination.resolve() == source.resolve():
        raise BackupError("The backup cannot be written over the database itself")
    partial = destination.with_name(f".{destination.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        src = sqlite3.connect(source, timeout=30)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # one step: one snapshot, consistent
            dst.execute("PRAGMA journal_mode=DELETE")
            _check(dst, "The copy")
        finally:
            dst.close()
            src.close()
        os.replace(partial, destination)
    except (sqlite3.Error, BackupError) as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"The backup failed: {exc}") from exc
    return inspect(destination)


def _known_revision(revision: str | None) -> bool:
    if revision is None:
        return False
    try:
        found = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(revision)
    except CommandError:
        return False
    return found is not None


def _in_use(target: Path) -> bool:
    """Whether some process has the database open: leaving WAL mode needs it to be the only
    connection (the shop's processes keep theirs open while they run)."""
    conn = sqlite3.connect(target, timeout=0)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


def restore(source: Path, target: Path, *, force: bool = False) -> BackupInfo:
    """Put the backup ``source`` in place of the database ``target``.

    The backup must be undamaged and at a migration revision this Mercato knows (an older one
    is brought up to date by ``mercato migrate`` afterwards). A database some process has open
    (a running shop) is only overwritten with ``force``: stop the shop first, since its search
    index and caches describe the data being replaced."""
    info = inspect(source)
    if not _known_revision(info.revision):
        raise BackupError(
            f"{source} is at migration revision {info.revision or '(none)'}, which this "
            f"Mercato does not know (it is at {head_revision()}): restore it with the Mercato "
            "that made it"
        )
    if not force and in_use(target):
        raise BackupError(f"{target} is open in a running shop: stop it first (or pass --force)")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target, timeout=30)
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        raise BackupError(f"The restore failed: {exc}") from exc
    finally:
        dst.close()
        src.close()
    return BackupInfo(target, info.revision, target.stat().st_size)


def in_use(target: Path) -> bool:
    """Whether a running process has the database ``target`` open."""
    return target.exists() and _in_use(target)
