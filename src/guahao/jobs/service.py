"""Operator views of the job queue: dead letters, retrying them, counts."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core import audit
from guahao.jobs.errors import JobNotDead, JobNotFound
from guahao.outbox import service as outbox
from guahao.outbox.models import OUTBOX_STATES, OutboxMessage


async def list_dead(session: AsyncSession, *, limit: int, before_id: int | None = None,
                    topic: str | None = None) -> list[OutboxMessage]:
    """Newest first; keyset pagination on id."""
    m = OutboxMessage
    query = select(m).where(m.state == "dead").order_by(m.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(m.id < before_id)
    if topic is not None:
        query = query.where(m.topic == topic)
    return list(await session.scalars(query))


async def do_retry_dead(session: AsyncSession, message_id: int, *, now: dt.datetime,
                        staff_id: int) -> OutboxMessage:
    """Dead -> pending, due now, attempts reset; audited. Conditional on the state, so two
    operators pressing retry at once requeue it once."""
    m = OutboxMessage
    message = await session.get(m, message_id)
    if message is None:
        raise JobNotFound()
    before = {"attempts": message.attempts, "last_error": message.last_error}
    result = await session.execute(
        update(m).where(m.id == message_id, m.state == "dead")
        .values(state="pending", attempts=0, available_at=now, locked_until=None, lease_token=None, done_at=None)
        .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise JobNotDead(state=message.state)
    await audit.do_record(session, now=now, action="job.retry", object_type="outbox_message",
                                object_id=message_id, hospital_id=message.hospital_id, staff_id=staff_id,
                                detail={"topic": message.topic, **before})
    await session.refresh(message)
    return message


async def stats(session: AsyncSession, *, now: dt.datetime) -> tuple[dict[str, int], list[tuple[str, str, int]], float]:
    m = OutboxMessage
    rows = (await session.execute(
        select(m.topic, m.state, func.count()).group_by(m.topic, m.state).order_by(m.topic, m.state))).all()
    by_state = dict.fromkeys(OUTBOX_STATES, 0)
    for _topic, state, count in rows:
        by_state[state] = by_state.get(state, 0) + count
    oldest = await outbox.oldest_due(session, now=now)
    lag = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return by_state, [(t, s, c) for t, s, c in rows], lag
