"""Writing outbox messages, and the queue operations the job workers use on them.

Delivery story (the workers are in guahao.jobs.runner):
1. claim: one short transaction picks due messages (pending and available, or in_progress
   with a lapsed lease) and marks them in_progress with `locked_until = now + lease`,
   `attempts + 1` and a fresh lease token. PostgreSQL skips rows another worker is claiming
   (`FOR UPDATE SKIP LOCKED`); SQLite write transactions are exclusive (BEGIN IMMEDIATE), and
   the UPDATE repeats the due condition so a claim can never take a row that stopped being due.
2. the handler runs outside any transaction of ours.
3. finish: a new transaction marks the message done / pending again / dead, conditional on
   still holding the lease token. A worker that lost its lease (it stalled past
   locked_until and another worker reclaimed the message) changes nothing.
Hence delivery is at least once, and handlers make their effects idempotent.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, String, and_, cast, exists, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core.db import delete_oldest, insert_many
from guahao.outbox.models import OutboxMessage

ERROR_MAX = 500


async def enqueue(session: AsyncSession, *, topic: str, dedupe_key: str, payload: dict[str, Any],
                  now: dt.datetime, hospital_id: int | None = None, available_at: dt.datetime | None = None) -> None:
    """Add a message unless one with the same dedupe key exists. Insert-or-ignore on the
    unique dedupe key, so a concurrent duplicate (another transaction, another process) is a
    no-op rather than an IntegrityError that would fail the state change that caused it."""
    await enqueue_once(session, topic=topic, dedupe_key=dedupe_key, payload=payload, now=now,
                       hospital_id=hospital_id, available_at=available_at)


async def enqueue_once(session: AsyncSession, *, topic: str, dedupe_key: str, payload: dict[str, Any],
                       now: dt.datetime, hospital_id: int | None = None,
                       available_at: dt.datetime | None = None) -> bool:
    """Insert a message unless its dedupe key exists, race-safe across transactions and
    processes (INSERT ... ON CONFLICT DO NOTHING): a concurrent duplicate is a no-op instead of
    an error. Returns whether this call inserted it."""
    table = OutboxMessage.__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (insert(table)
            .values(hospital_id=hospital_id, topic=topic, dedupe_key=dedupe_key, payload=payload, state="pending",
                    attempts=0, available_at=available_at or now, created_at=now)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(table.c.id))
    return (await session.execute(stmt)).scalar() is not None


async def enqueue_many(session: AsyncSession, messages: list[dict[str, Any]], *, now: dt.datetime) -> None:
    """`enqueue` for many messages in one statement (each a dict of topic, dedupe_key, payload
    and optionally hospital_id): insert-or-ignore on the dedupe key, like `enqueue`."""
    if not messages:
        return
    rows = [{"dedupe_key": m["dedupe_key"], "hospital_id": m.get("hospital_id"), "topic": m["topic"],
             "payload": m["payload"], "state": "pending", "attempts": 0, "available_at": now, "created_at": now}
            for m in messages]
    # one statement for all (a multi-row VALUES compiled anew per call cost ten times as much)
    await insert_many(session, OutboxMessage.__table__, rows, skip_conflicts_on=["dedupe_key"])


# --- the queue (used by guahao.jobs.runner) ------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """A message this worker holds the lease of."""

    id: int
    topic: str
    payload: dict[str, Any]
    attempts: int  # including this one
    available_at: dt.datetime
    token: str


def _due(now: dt.datetime):
    m = OutboxMessage
    return or_(and_(m.state == "pending", m.available_at <= now),
               and_(m.state == "in_progress", m.locked_until < now))


async def claim_due(session: AsyncSession, *, now: dt.datetime, lease: dt.timedelta, limit: int,
                    token: str) -> list[Claim]:
    """Lease up to `limit` due messages, oldest first (see the module docstring)."""
    m = OutboxMessage
    ids = list(await session.scalars(
        select(m.id).where(_due(now)).order_by(m.available_at, m.id).limit(limit)
        .with_for_update(skip_locked=True)))  # SQLite renders no FOR UPDATE: BEGIN IMMEDIATE serialises
    if not ids:
        return []
    rows = await session.execute(
        update(m).where(m.id.in_(ids), _due(now))
        .values(state="in_progress", locked_until=now + lease, attempts=m.attempts + 1, lease_token=token)
        .returning(m.id, m.topic, m.payload, m.attempts, m.available_at)
        .execution_options(synchronize_session=False))
    claims = [Claim(r.id, r.topic, r.payload, r.attempts, r.available_at, token) for r in rows]
    return sorted(claims, key=lambda c: (c.available_at, c.id))


def _owned(claim: Claim):
    m = OutboxMessage
    return and_(m.id == claim.id, m.lease_token == claim.token, m.state == "in_progress")


async def _finish(session: AsyncSession, claim: Claim, **values: Any) -> bool:
    result = await session.execute(
        update(OutboxMessage).where(_owned(claim)).values(locked_until=None, lease_token=None, **values)
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


async def mark_done(session: AsyncSession, claim: Claim, *, now: dt.datetime) -> bool:
    """False when the lease was lost (another worker reclaimed the message)."""
    return await _finish(session, claim, state="done", done_at=now)


async def mark_retry(session: AsyncSession, claim: Claim, *, at: dt.datetime, error: str,
                     count_attempt: bool = True) -> bool:
    extra: dict[str, Any] = {} if count_attempt else {"attempts": OutboxMessage.attempts - 1}
    return await _finish(session, claim, state="pending", available_at=at, last_error=error[:ERROR_MAX], **extra)


async def mark_dead(session: AsyncSession, claim: Claim, *, now: dt.datetime, error: str) -> bool:
    return await _finish(session, claim, state="dead", done_at=now, last_error=error[:ERROR_MAX])


async def extend_leases(session: AsyncSession, tokens: list[str], *, until: dt.datetime) -> int:
    """Heartbeat: keep the leases of messages still running in this worker."""
    if not tokens:
        return 0
    m = OutboxMessage
    result = await session.execute(
        update(m).where(m.lease_token.in_(tokens), m.state == "in_progress").values(locked_until=until)
        .execution_options(synchronize_session=False))
    return result.rowcount


async def oldest_due(session: AsyncSession, *, now: dt.datetime) -> dt.datetime | None:
    m = OutboxMessage
    return await session.scalar(select(func.min(m.available_at)).where(m.state == "pending", m.available_at <= now))


async def purge_done(session: AsyncSession, *, before: dt.datetime, limit: int) -> int:
    """Retention: finished messages done before `before`. Dead letters stay until an operator
    has handled them (retried, they become done and age from then); pending work stays."""
    return await delete_oldest(session, OutboxMessage,
                               (OutboxMessage.state == "done") & (OutboxMessage.done_at < before), limit=limit)


# --- reads for other features ----------------------------------------------------------------

async def unfinished_payloads(session: AsyncSession, *, topic: str,
                              hospital_id: int | None = None) -> list[dict[str, Any]]:
    """Payloads of the `topic` messages not processed yet (neither done nor dead)."""
    m = OutboxMessage
    query = select(m.payload).where(m.topic == topic, m.state.not_in(("done", "dead")))
    if hospital_id is not None:
        query = query.where(m.hospital_id == hospital_id)
    return list(await session.scalars(query))


async def is_unfinished(session: AsyncSession, dedupe_key: str) -> bool:
    """Whether the message with this dedupe key exists and is not processed yet (neither
    done nor dead): a consumer whose effect must follow another's waits for it."""
    m = OutboxMessage
    return bool(await session.scalar(select(exists().where(m.dedupe_key == dedupe_key,
                                                           m.state.not_in(("done", "dead"))))))


async def keys_starting(session: AsyncSession, prefix: str) -> list[str]:
    """The dedupe keys that start with `prefix`, whatever their state: which messages about
    a subject were written (e.g. every pause notice of a waitlist entry)."""
    m = OutboxMessage
    return list(await session.scalars(select(m.dedupe_key).where(m.dedupe_key.startswith(prefix, autoescape=True))))


async def oldest_unfinished(session: AsyncSession, *, topic_prefix: str,
                            hospital_id: int | None = None) -> dt.datetime | None:
    """When the oldest unprocessed message of the topics starting with `topic_prefix` was
    written (None when there is none): the lag of that queue, e.g. the HIS write-back."""
    m = OutboxMessage
    query = select(func.min(m.created_at)).where(m.topic.startswith(topic_prefix, autoescape=True),
                                                 m.state.not_in(("done", "dead")))
    if hospital_id is not None:
        query = query.where(m.hospital_id == hospital_id)
    return await session.scalar(query)


def not_enqueued(topic: str, subject_id: ColumnElement[int]) -> ColumnElement[bool]:
    """SQL condition: no message with dedupe key `<topic>:<subject_id>` exists yet. For scans
    that must skip what they already enqueued inside the same LIMITed statement (the unique
    dedupe_key index answers it)."""
    key = literal(f"{topic}:", String) + cast(subject_id, String)
    return ~exists().where(OutboxMessage.dedupe_key == key)
