"""Idempotency-Key handling for client writes (I7): the key table and its protocol.

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

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, Database, IdMixin, UTCDateTime
from guahao.core.errors import GuahaoError


class IdempotencyKey(IdMixin, Base):
    """The first answer to a client write, replayed for retries with the same key (I7)."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(100))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("account_id", "key"),)



class IdempotencyKeyRequired(GuahaoError):
    code, status = "idempotency_key_required", 400
    zh = "缺少 Idempotency-Key 请求头,请为每次提交生成唯一键。"
    en = "The Idempotency-Key header is required; send a unique key per attempt."


class IdempotencyKeyReused(GuahaoError):
    code, status = "idempotency_key_reused", 422
    zh = "该 Idempotency-Key 已用于另一个不同的请求,请使用新的键。"
    en = "This Idempotency-Key was used for a different request; use a new key."



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


def _answer(row, req_hash: str) -> tuple[int, dict] | None:
    if row is None or row.status_code in (None, 0):
        return None
    if row.request_hash != req_hash:
        raise IdempotencyKeyReused()
    return row.status_code, row.response


async def lookup(db: Database, account_id: int, key: str, req_hash: str, *,
                 prefetched: Any = None) -> tuple[int, dict] | None:
    """The stored answer for this key, if any.

    `prefetched` is the key row read together with the session token by the authentication
    dependency (one round trip for both on the hot path); otherwise one autocommit SELECT.
    """
    if prefetched is not None and prefetched[0] == (account_id, key):
        return _answer(prefetched[1], req_hash)
    t = IdempotencyKey.__table__
    async with db.peek() as conn:
        row = (await conn.execute(select(t.c.status_code, t.c.request_hash, t.c.response)
                                  .where(t.c.account_id == account_id, t.c.key == key))).first()
    return _answer(row, req_hash)


async def run(db: Database, *, account_id: int, key: str, req_hash: str, now: dt.datetime,
              work: Callable[[AsyncSession], Awaitable[dict[str, Any]]],
              render_error: Callable[[GuahaoError], dict[str, Any]],
              remember_refusal: Callable[[GuahaoError], bool] = lambda exc: True) -> tuple[int, dict[str, Any]]:
    """Run `work` once per (account, key); return (status, body) of the first answer.

    The caller has already looked the key up (`lookup`); a twin that raced past that lookup
    waits on the key's unique index here and replays the winner's answer. Refusals for which
    `remember_refusal` is false are not stored: a retry evaluates them afresh.
    """
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
        if not remember_refusal(exc):
            return exc.status, body
        try:
            async with db.begin() as session:
                session.add(IdempotencyKey(account_id=account_id, key=key, request_hash=req_hash,
                                           status_code=exc.status, response=body, created_at=now))
        except IntegrityError:
            stored = await lookup(db, account_id, key, req_hash)
            if stored is not None:
                return stored
        return exc.status, body
