"""Idempotency-Key handling for client writes (I7): the key table and its protocol.

Every answer for a key is the key's answer. The key row is the cross-process truth:
- a write claims the key at the start of its transaction (insert, or take over an answer
  whose replay window ended before this request arrived) and fills in the answer at its end,
  so a concurrent retry blocks on the key's row until the first transaction ends and then
  replays its answer;
- a refusal is stored in its own transaction (the refused one rolled back), and so is an
  answer given without any write transaction (the sold-out gate): `record` is one
  insert-or-nothing statement, and when the key already has an answer (or a write in flight,
  which the statement waits for) that answer is returned instead of ours.

Which answers are replayed for how long (`replay_until`, NULL = as long as the row is kept):
a success forever; a refusal only for a short retry window (`REFUSAL_REPLAY`, capped by the
refusal's own end, e.g. the release time of `not_yet_released`), because refusals depend on
time and state (a seat comes back, the release comes, a restriction ends) and had no effect.
A request may take over an ended answer only if it arrived after the window ended, so a slow
first request never overrides the answer its own retry was already given.

In flight (`IN_FLIGHT`, 102): a write that must ask another system before it can answer (a
realtime hold asks the hospital's HIS, booking/hold_flow.py) commits its first transaction
with the key marked in flight instead of answered, makes the call with no transaction open,
and writes the final answer with `finish` in the transaction that records the call's outcome.
A twin that finds the key in flight waits for that final answer (`settled`), so it is never
told a different story; the wait is bounded (`IdempotencyKeyBusy` after it).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, Database, IdMixin, UTCDateTime, delete_oldest
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
    # the answer is replayed until then (NULL: for as long as the row is kept); see above
    replay_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("account_id", "key"),)



class IdempotencyKeyRequired(GuahaoError):
    code, status = "idempotency_key_required", 400
    zh = "缺少 Idempotency-Key 请求头,请为每次提交生成唯一键。"
    en = "The Idempotency-Key header is required; send a unique key per attempt."


class IdempotencyKeyBusy(GuahaoError):
    code, status = "idempotency_key_busy", 409
    zh = "使用该 Idempotency-Key 的请求仍在处理中,请稍后重试。"
    en = "A request with this Idempotency-Key is still being processed; retry shortly."


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


REFUSAL_REPLAY = dt.timedelta(seconds=10)
IN_FLIGHT = 102  # HTTP "Processing": committed first step, final answer still to come
IN_FLIGHT_WAIT = 30.0  # seconds a twin waits for an in-flight answer (HIS timeouts are far shorter)
_POLL = 0.05


@dataclass(frozen=True)
class InFlight:
    """Returned by `run`'s work to commit its transaction with the key in flight; `body`
    is what the finisher needs to know (e.g. the booking id), never shown to a client."""

    body: dict[str, Any]


def _answer(row, req_hash: str, arrived_at: dt.datetime) -> tuple[int, dict] | None:
    """The replayable answer in a key row for a request that arrived at `arrived_at`."""
    if row is None or row.status_code in (None, 0):
        return None
    if row.request_hash != req_hash:
        raise IdempotencyKeyReused()
    if row.replay_until is not None and row.replay_until <= arrived_at:
        return None  # a refusal whose window ended before this request came: a fresh attempt
    return row.status_code, row.response


async def lookup(db: Database, account_id: int, key: str, req_hash: str, *,
                 arrived_at: dt.datetime) -> tuple[int, dict] | None:
    """The stored answer for this key, if any (one autocommit SELECT)."""
    t = IdempotencyKey.__table__
    async with db.peek() as conn:
        row = (await conn.execute(select(t.c.status_code, t.c.request_hash, t.c.response, t.c.replay_until)
                                  .where(t.c.account_id == account_id, t.c.key == key))).first()
    return _answer(row, req_hash, arrived_at)


def replay_answer(row: Any, req_hash: str, arrived_at: dt.datetime) -> tuple[int, dict] | None:
    """`lookup` for a row read by the caller (the booking route reads it with the session).
    May be `IN_FLIGHT`: the caller then waits with `settled`."""
    return _answer(row, req_hash, arrived_at)


async def settled(db: Database, account_id: int, key: str, req_hash: str, *, arrived_at: dt.datetime,
                  timeout: float | None = None, give_up_in_flight: bool = False) -> tuple[int, dict] | None:
    """The key's answer once it is no longer in flight (None: it has none any more, e.g. the
    in-flight attempt was taken back). Polls the key row: the first request finishes in
    another transaction, maybe in another process, so there is no in-process event to wait on.
    After `timeout` (default IN_FLIGHT_WAIT): `IdempotencyKeyBusy`, or with
    `give_up_in_flight` the in-flight answer itself, for a caller that can finish it."""
    deadline = time.monotonic() + (IN_FLIGHT_WAIT if timeout is None else timeout)
    while True:
        stored = await lookup(db, account_id, key, req_hash, arrived_at=arrived_at)
        if stored is None or stored[0] != IN_FLIGHT:
            return stored
        if time.monotonic() >= deadline:
            if give_up_in_flight:
                return stored
            raise IdempotencyKeyBusy()
        await asyncio.sleep(_POLL)


async def finish(session: AsyncSession, *, account_id: int, key: str, status: int, body: dict[str, Any],
                 replay_until: dt.datetime | None) -> None:
    """Inside the transaction that records what the outside call said: replace the key's
    in-flight mark with its final answer (I7: the answer commits with its effect)."""
    await session.execute(update(IdempotencyKey).where(IdempotencyKey.account_id == account_id,
                                                       IdempotencyKey.key == key,
                                                       IdempotencyKey.status_code == IN_FLIGHT)
                          .values(status_code=status, response=body, replay_until=replay_until))


_CLAIM_COLUMNS = ("account_id", "key", "request_hash", "status_code", "response", "created_at", "replay_until")


@functools.cache
def _claim_template(dialect: str):
    """INSERT the key row, or take over one whose answer stopped being replayed before this
    request arrived (same request only); RETURNING tells whether we got it. On PostgreSQL a
    conflicting uncommitted row makes the statement wait for its transaction to end.

    Built once per dialect with bound parameters: building the ON CONFLICT construct cost more
    CPU than the rest of a sold-out answer (profiled under the release rush)."""
    t = IdempotencyKey.__table__
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = insert(t).values({name: bindparam(name, type_=t.c[name].type) for name in _CLAIM_COLUMNS})
    return stmt.on_conflict_do_update(
        index_elements=[t.c.account_id, t.c.key],
        set_={name: stmt.excluded[name] for name in ("status_code", "response", "created_at", "replay_until")},
        where=(t.c.replay_until.is_not(None)) & (t.c.replay_until <= bindparam("arrived_at", type_=UTCDateTime()))
        & (t.c.request_hash == stmt.excluded.request_hash),
    ).returning(t.c.id)


def _claim_statement(dialect: str, values: dict[str, Any], arrived_at: dt.datetime):
    """The claim statement and its parameters, for `execute(*_claim_statement(...))`."""
    return _claim_template(dialect), {**values, "arrived_at": arrived_at}


async def record(db: Database, *, account_id: int, key: str, req_hash: str, arrived_at: dt.datetime,
                 status: int, body: dict[str, Any], replay_until: dt.datetime | None) -> tuple[int, dict[str, Any]]:
    """Make (status, body) the key's answer unless it has one; return the key's answer.

    One statement in a write transaction: no claim, no work. Used for refusals, including the
    sold-out gate's, so a retry racing its first request gets the same answer either way."""
    values = dict(account_id=account_id, key=key, request_hash=req_hash, status_code=status, response=body,
                  created_at=arrived_at, replay_until=replay_until)
    for _ in range(5):
        if await _insert_once(db, *_claim_statement(db.engine.dialect.name, values, arrived_at)):
            return status, body
        stored = await settled(db, account_id, key, req_hash, arrived_at=arrived_at)
        if stored is not None:
            return stored
        # the answer we conflicted with has gone (its write rolled back) or ended: try again
    return status, body


async def _insert_once(db: Database, stmt, params: dict[str, Any]) -> bool:
    """One statement, committed: on PostgreSQL in autocommit (one round trip, the sold-out
    gate's whole cost); on SQLite in a write transaction (writers queue on BEGIN IMMEDIATE)."""
    if db.is_sqlite:
        async with db.begin() as session:
            return (await session.execute(stmt, params)).scalar() is not None
    async with db.peek() as conn:
        return (await conn.execute(stmt, params)).scalar() is not None


class _KeyTaken(Exception):
    """The key already has an answer (or had one when we looked): replay it."""


async def run(db: Database, *, account_id: int, key: str, req_hash: str, arrived_at: dt.datetime,
              work: Callable[[AsyncSession], Awaitable[dict[str, Any] | InFlight]],
              render_error: Callable[[GuahaoError], dict[str, Any]],
              replay_until: Callable[[GuahaoError], dt.datetime | None]) -> tuple[int, dict[str, Any]]:
    """Run `work` once per (account, key); return (status, body) of the key's answer.
    `work` may return `InFlight(body)`: then (IN_FLIGHT, body) comes back and the caller
    owes the key its final answer (`finish`).

    The claim is the first statement of the work transaction: a twin waits on the key row
    there and replays the winner's answer. A refusal is recorded with the window that
    `replay_until` gives it (see the module docstring)."""
    claim = dict(account_id=account_id, key=key, request_hash=req_hash, status_code=0, response={},
                 created_at=arrived_at, replay_until=None)
    for _ in range(5):
        try:
            async with db.begin() as session:
                stmt, params = _claim_statement(session.bind.dialect.name, claim, arrived_at)
                if (await session.execute(stmt, params)).scalar() is None:
                    raise _KeyTaken()
                body = await work(session)
                status = 201
                if isinstance(body, InFlight):  # the answer comes later, through `finish`
                    status, body = IN_FLIGHT, body.body
                await session.execute(update(IdempotencyKey).where(IdempotencyKey.account_id == account_id,
                                                                   IdempotencyKey.key == key)
                                      .values(status_code=status, response=body, replay_until=None))
            return status, body
        except _KeyTaken:
            stored = await settled(db, account_id, key, req_hash, arrived_at=arrived_at)
            if stored is not None:
                return stored
        except GuahaoError as exc:
            return await record(db, account_id=account_id, key=key, req_hash=req_hash, arrived_at=arrived_at,
                                status=exc.status, body=render_error(exc), replay_until=replay_until(exc))
    raise IdempotencyKeyBusy()


async def purge(session: AsyncSession, *, before: dt.datetime, limit: int) -> int:
    """Retention: keys created before `before` (far longer ago than any client retries)."""
    return await delete_oldest(session, IdempotencyKey, IdempotencyKey.created_at < before, limit=limit)
