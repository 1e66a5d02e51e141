"""``salesbot backup``: a consistent copy of a live SQLite database.

The live file alone is not the database: in WAL mode the latest commits live in ``<file>-wal``
until a checkpoint folds them in, so a plain file copy can look healthy and still lack them (the
bot then re-sends what it had already sent). SQLite's online backup API copies what one read
transaction sees (every committed write, wherever it lives, and no uncommitted one) while the
bot keeps reading and writing.

A backup is restored into a database that no process is sending from any more, so the copy marks
every send still under way (outgoing log ``sending``) as ``unknown``: whatever went out between
the backup and the restore, recovery treats each of them as "delivery unknown" (the rep is asked
to check the chat) and never sends it again. On the live database recovery may release a batch's
sends after the first unfinished one as never attempted; in a backup nothing proves that.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

# what the backup writes into a send's error, before recovery settles it as in doubt
UNDER_WAY = "under way when the backup was taken; delivery unknown"
_TABLES = ("customer", "scheduled_message", "outgoing_message")


class BackupError(Exception):
    """The backup was not made: the message, naming the file, is meant for people."""


@dataclass(frozen=True)
class BackupResult:
    path: Path
    size: int  # bytes
    customers: int
    pending: int  # scheduled messages waiting to go out
    in_doubt: int  # sends under way at the backup, marked "delivery unknown" in the copy


def sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names (``sqlite[+driver]:///path``); None for another database or
    an in-memory one."""
    if not url.startswith("sqlite"):
        return None
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return None if path in ("", ":memory:") else Path(path)


def backup_sqlite(source: Path, target: Path, *, force: bool = False) -> BackupResult:
    """Copy the database at ``source`` to ``target`` (one self-contained file, no ``-wal``), safe
    while another process writes it. Refuses an existing ``target`` unless ``force``."""
    source, target = source.resolve(), target.resolve()
    if not source.is_file():
        raise BackupError(f"{source}: no database there (has salesbot run with this config?)")
    if target in (source, Path(f"{source}-wal"), Path(f"{source}-shm"), Path(f"{source}-journal")):
        raise BackupError(f"{target}: that is the live database; choose another file for the backup")
    if target.is_dir():
        raise BackupError(f"{target}: is a folder; name the backup file")
    if not target.parent.is_dir():
        raise BackupError(f"{target.parent}: no such folder")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; pass --force to overwrite it")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        counts = _copy(source, partial)
        with open(partial, "rb") as written:  # on disk before it takes the backup's name
            os.fsync(written.fileno())
        os.replace(partial, target)
    except OSError as exc:
        raise BackupError(f"{target}: cannot write the backup ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink()
    customers, pending, in_doubt = counts
    return BackupResult(target, target.stat().st_size, customers, pending, in_doubt)


def _copy(source: Path, target: Path) -> tuple[int, int, int]:
    """The online backup of ``source`` into a new file ``target``, made self-contained and marked
    as restorable; returns (customers, pending messages, sends marked in doubt)."""
    with contextlib.suppress(FileNotFoundError):
        target.unlink()  # a partial file left by an interrupted run
    try:
        with contextlib.closing(sqlite3.connect(source, timeout=10)) as live:
            tables = {name for (name,) in live.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [table for table in _TABLES if table not in tables]
            if missing:
                raise BackupError(f"{source}: not a salesbot database (no table {missing[0]})")
            with contextlib.closing(sqlite3.connect(target)) as copy:
                # one step: the whole copy is what one read transaction sees. In WAL mode that
                # neither waits for nor blocks the bot's writes
                live.backup(copy)
                # the copied header says WAL, like the source's: read it (the connection switches
                # to WAL), then make the copy one rollback-journal file, nothing beside it to lose
                copy.execute("SELECT count(*) FROM sqlite_master").fetchone()
                (mode,) = copy.execute("PRAGMA journal_mode=DELETE").fetchone()
                if mode != "delete":
                    raise BackupError(f"{target}: cannot leave WAL mode (journal mode {mode})")
                in_doubt = copy.execute(
                    "UPDATE outgoing_message SET status = 'unknown', error = ? WHERE status = 'sending'",
                    (UNDER_WAY,),
                ).rowcount
                copy.commit()
                (check,) = copy.execute("PRAGMA quick_check").fetchone()
                if check != "ok":
                    raise BackupError(f"{source}: the copy fails SQLite's check ({check}); not written")
                (customers,) = copy.execute("SELECT count(*) FROM customer").fetchone()
                (pending,) = copy.execute(
                    "SELECT count(*) FROM scheduled_message WHERE status = 'pending'"
                ).fetchone()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise BackupError(f"{source}: not an SQLite database") from None
        raise BackupError(f"{source}: the backup failed ({exc})") from None
    return int(customers), int(pending), int(in_doubt)
