"""`guahao keys ...`: generate keys, check and run the re-encryption (docs/KEYS.md)."""
from __future__ import annotations

import asyncio
import base64
import secrets

import typer

keys_app = typer.Typer(help="Field-encryption keys: generate, status, re-encrypt (docs/KEYS.md)",
                       no_args_is_help=True)


@keys_app.command("generate")
def generate(kid: str = typer.Argument(..., help="the new key's id, e.g. d2 (letters, digits, - and _)")) -> None:
    """Print a new random 256-bit key as a keyring entry (kid:base64). Handle it as a secret."""
    from guahao.core.crypto import parse_keyring

    entry = f"{kid}:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    parse_keyring(entry, "", single_key="")  # validates the id
    typer.echo(entry)


async def _pass(*, dry_run: bool, batch_size: int):
    from guahao.config import get_settings
    from guahao.core import crypto
    from guahao.core.db import create_database
    from guahao.keys.rotation import reencrypt

    settings = get_settings()
    cipher = crypto.configure_from(settings)
    typer.echo(f"data keys {', '.join(cipher.data_kids)} (current {cipher.data_current}); "
               f"index keys {', '.join(cipher.index_kids)} (current {cipher.index_current})")
    db = create_database(settings.database_url, pool_size=2)
    try:
        return await reencrypt(db, batch_size=batch_size, dry_run=dry_run)
    finally:
        await db.dispose()


@keys_app.command("status")
def status(batch_size: int = 500) -> None:
    """Count values and hashes not yet under the current keys; exit 1 unless none remain."""
    report = asyncio.run(_pass(dry_run=True, batch_size=batch_size))
    for line in report.lines():
        typer.echo(line)
    if not report.clean:
        raise typer.Exit(1)
    typer.echo("everything is under the current keys: older keys not listed above may be retired")


@keys_app.command("reencrypt")
def reencrypt(batch_size: int = 200) -> None:
    """Rewrite values and lookup hashes under the current keys (batched, resumable)."""
    report = asyncio.run(_pass(dry_run=False, batch_size=batch_size))
    for line in report.lines():
        typer.echo(line)
    if report.unreadable or report.hash_conflicts:
        raise typer.Exit(1)
