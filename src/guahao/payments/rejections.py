"""Notifications that failed verification: counted, sampled and rate-limited.

Anyone on the internet can post to the notification URL. Keeping one row per forged post
would let a stranger grow our database without bound, so each is counted in one row per
provider, reason and hour (an upsert), and only the first `SAMPLE_PER_HOUR` of each hour
and reason are kept in full in payment_notifications for operators. Beyond the rate limit
(checked by the router before this runs) a forged post touches no table at all.
"""
from __future__ import annotations

import datetime as dt

from prometheus_client import Counter
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core.db import delete_oldest
from guahao.payments.models import PaymentNotification, RejectedNotificationCount

SAMPLE_PER_HOUR = 20
# forged notifications answered before any database work beyond this (per provider)
DEFAULT_LIMIT = "60/minute"

REJECTED = Counter("guahao_payment_notifications_rejected_total",
                   "Payment notifications that failed verification", ["provider", "reason"])


def hour_of(now: dt.datetime) -> dt.datetime:
    return now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


async def do_count_rejected(session: AsyncSession, *, provider: str, reason: str, body_sha256: str,
                            now: dt.datetime) -> bool:
    """Count one rejected notification; keep it as a sample while the hour's count is low.
    Returns whether it was sampled. Concurrent rejections meet on the bucket's unique index:
    the upsert adds to the row whichever of them created it."""
    reason = reason[:30]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    table = RejectedNotificationCount
    statement = (insert(table).values(provider=provider, reason=reason, hour=hour_of(now), count=1)
                 .on_conflict_do_update(index_elements=["provider", "reason", "hour"],
                                        set_={"count": table.count + 1})
                 .returning(table.count))
    count = (await session.execute(statement)).scalar_one()
    if count > SAMPLE_PER_HOUR:
        return False
    session.add(PaymentNotification(provider=provider, body_sha256=body_sha256, verified=False, outcome=reason,
                                    received_at=now))
    return True


async def purge(session: AsyncSession, *, before: dt.datetime, limit: int) -> int:
    """Retention: the samples of refused notifications received before `before`, then the
    hourly counts of that age. Verified notifications stay: they are part of the money's
    record."""
    samples = await delete_oldest(session, PaymentNotification,
                                  PaymentNotification.verified.is_(False) & (PaymentNotification.received_at < before),
                                  limit=limit)
    if samples == limit:
        return samples
    return samples + await delete_oldest(session, RejectedNotificationCount,
                                         RejectedNotificationCount.hour < before, limit=limit - samples)
