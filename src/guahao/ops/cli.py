"""Operator commands: `guahao backup`, `guahao restore`, `guahao check` (docs/OPERATIONS.md)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from guahao.config import get_settings


def backup(target: Path = typer.Argument(..., help="file to write (replaced only when the copy is complete)")) -> None:
    """Copy the database while it serves (SQLite online backup, or pg_dump)."""
    from guahao.ops.backup import BackupError
    from guahao.ops.backup import backup as take

    try:
        copied = take(get_settings().database_url, target)
    except BackupError as exc:
        typer.echo(f"backup failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{copied.kind} backup written to {copied.path} ({copied.size} bytes)")


def restore(source: Path = typer.Argument(..., help="a file written by `guahao backup`"),
            yes: bool = typer.Option(False, "--yes", help="do not ask; the database's contents are replaced")) -> None:
    """Replace the database with a backup, then audit it. Stop the service and workers first."""
    from guahao.ops.backup import BackupError
    from guahao.ops.backup import restore as put_back

    url = get_settings().database_url
    if not yes:
        typer.confirm(f"Replace the contents of {url.split('@')[-1]} with {source}?", abort=True)
    try:
        put_back(source, url)
    except BackupError as exc:
        typer.echo(f"restore failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"restored {source}")
    check()


def check() -> None:
    """Audit the database against the invariants I1-I5; exit 1 on any violation."""
    from guahao.core.clock import SystemClock
    from guahao.core.db import create_database
    from guahao.ops.invariants import check_all

    async def run() -> list[str]:
        db = create_database(get_settings().database_url)
        try:
            return await check_all(db, now=SystemClock().now())
        finally:
            await db.dispose()

    problems = asyncio.run(run())
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("invariants I1-I5 hold")


def register(app: typer.Typer) -> None:
    for command in (backup, restore, check):
        app.command()(command)
