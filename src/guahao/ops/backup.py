"""`guahao backup` and `guahao restore`: a consistent copy of the database taken while it serves.

- SQLite (the embedded default): SQLite's online backup API copies the database page by page
  inside one read transaction, so writers carry on (WAL mode) and the copy is the database as
  of one instant. The copy is checked (`PRAGMA integrity_check`) and only then renamed into
  place, so a failed or interrupted backup never leaves a half file under the wanted name.
- PostgreSQL: `pg_dump --format=custom`, which also reads one snapshot while the service runs,
  and `pg_restore --single-transaction` back. Point-in-time recovery (WAL archiving) is the
  server's job and is described in docs/OPERATIONS.md; these commands are the logical copy
  that also moves a database between machines.

Restore replaces the target's contents: stop the service (and workers) first. The restored
database is checked with the invariant audit (ops/invariants.py) by the caller.
"""
from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(Exception):
    pass


@dataclass(frozen=True)
class Copied:
    path: Path
    size: int
    kind: str  # "sqlite" | "pg_dump"


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite"):
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(parsed.database)


def _check_sqlite(path: Path) -> None:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
        versioned = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path}: not a readable SQLite database ({exc})") from None
    finally:
        conn.close()
    if result != "ok":
        raise BackupError(f"{path}: integrity check failed: {result}")
    if versioned != 1:
        raise BackupError(f"{path}: not a guahao database (no migration version)")


def _sqlite_copy(source: Path, target: Path) -> None:
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)  # all pages in one step: one consistent read transaction
    finally:
        dst.close()
        src.close()


def _pg_args(url: str) -> tuple[list[str], dict[str, str]]:
    parsed = make_url(url)
    args = ["--host", parsed.host or "127.0.0.1", "--port", str(parsed.port or 5432),
            "--username", parsed.username or "postgres", "--dbname", parsed.database or "postgres"]
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = parsed.password  # never on the command line, where `ps` shows it
    return args, env


def _run(command: list[str], env: dict[str, str]) -> None:
    if shutil.which(command[0]) is None:
        raise BackupError(f"{command[0]} is not installed (Debian: postgresql-client)")
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BackupError(f"{command[0]} failed: {done.stderr.strip()[-500:]}")


def backup(url: str, target: Path) -> Copied:
    target = target.resolve()
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    source = _sqlite_path(url)
    if source is not None:
        if not source.exists():
            raise BackupError(f"{source} does not exist")
        _sqlite_copy(source, partial)
        _check_sqlite(partial)
        kind = "sqlite"
    else:
        args, env = _pg_args(url)
        _run(["pg_dump", "--format=custom", "--no-owner", "--file", str(partial), *args], env)
        kind = "pg_dump"
    os.replace(partial, target)
    return Copied(target, target.stat().st_size, kind)


def restore(source: Path, url: str) -> None:
    """Replace the database at `url` with the copy at `source` (taken by `backup`)."""
    if not source.exists():
        raise BackupError(f"{source} does not exist")
    target = _sqlite_path(url)
    if target is not None:
        _check_sqlite(source)  # refuse a damaged copy before touching the database
        _sqlite_copy(source, target)
        _check_sqlite(target)
        return
    args, env = _pg_args(url)
    _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction", *args, str(source)], env)
