"""Writing outbox messages. Consumers (workers) arrive with the job system."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.outbox.models import OutboxMessage


async def enqueue(session: AsyncSession, *, topic: str, dedupe_key: str, payload: dict[str, Any],
                  now: dt.datetime, hospital_id: int | None = None, available_at: dt.datetime | None = None) -> None:
    """Add a message unless one with the same dedupe key exists (in this transaction's view).

    The unique dedupe_key is the real guard: a concurrent duplicate fails the transaction
    that caused it rather than producing a second effect.
    """
    exists = await session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == dedupe_key))
    if exists is not None:
        return
    session.add(OutboxMessage(hospital_id=hospital_id, topic=topic, dedupe_key=dedupe_key, payload=payload,
                              state="pending", attempts=0, available_at=available_at or now, created_at=now))
