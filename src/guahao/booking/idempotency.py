"""Idempotency-Key handling for client writes (I7).

The key row is inserted at the start of the write transaction and filled with the answer
at its end, so a concurrent retry blocks on the unique key until the first transaction
ends and then replays its answer. A refusal is stored too (in its own transaction, since
the refused one rolled back), so a retry gets the same answer rather than a second attempt.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.errors import IdempotencyKeyRequired, IdempotencyKeyReused
from guahao.booking.models import IdempotencyKey
from guahao.core.db import Database
from guahao.core.errors import GuahaoError


def request_hash(method: str, path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def validate_key(key: str | None) -> str:
    if not key or len(key) > 100 or not key.isprintable():
        raise IdempotencyKeyRequired()
    return key


class StoredError(Exception):
    """A refusal replayed from the key store: status and problem body as first answered."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.status, self.body = status, body


async def lookup(db: Database, account_id: int, key: str, req_hash: str) -> tuple[int, dict] | None:
    async with db.read() as session:
        row = await session.scalar(select(IdempotencyKey).where(IdempotencyKey.account_id == account_id,
                                                                IdempotencyKey.key == key))
    if row is None or row.status_code == 0:
        return None
    if row.request_hash != req_hash:
        raise IdempotencyKeyReused()
    return row.status_code, row.response


async def run(db: Database, *, account_id: int, key: str, req_hash: str, now: dt.datetime,
              work: Callable[[AsyncSession], Awaitable[dict[str, Any]]],
              render_error: Callable[[GuahaoError], dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """Run `work` once per (account, key); return (status, body) of the first answer."""
    stored = await lookup(db, account_id, key, req_hash)
    if stored is not None:
        return stored
    try:
        async with db.begin() as session:
            session.add(IdempotencyKey(account_id=account_id, key=key, request_hash=req_hash, status_code=0,
                                       response={}, created_at=now))
            await session.flush()  # a concurrent twin waits here until we finish
            body = await work(session)
            await session.execute(update(IdempotencyKey).where(IdempotencyKey.account_id == account_id,
                                                               IdempotencyKey.key == key)
                                  .values(status_code=201, response=body))
        return 201, body
    except IntegrityError:
        stored = await lookup(db, account_id, key, req_hash)
        if stored is None:
            raise
        return stored
    except GuahaoError as exc:
        body = render_error(exc)
        try:
            async with db.begin() as session:
                session.add(IdempotencyKey(account_id=account_id, key=key, request_hash=req_hash,
                                           status_code=exc.status, response=body, created_at=now))
        except IntegrityError:
            stored = await lookup(db, account_id, key, req_hash)
            if stored is not None:
                return stored
        return exc.status, body
