"""Send a message once: claim its `sent_messages` row, call the gateway, mark it sent.

The concurrency story. Three short transactions, none open while the gateway is called:

1. claim: INSERT ... ON CONFLICT DO NOTHING on the unique dedupe key. The inserter owns the
   attempt. Otherwise the existing row decides: `sent` -> nothing to do; `sending` with a
   live lease -> another worker is on it, RetryLater; `failed`, or `sending` whose lease
   lapsed (its worker died) -> a conditional UPDATE (same state and attempt count as we
   read) takes it over; of two racing takers one UPDATE matches, the other retries later.
2. send, outside any transaction.
3. mark `sent` (or `failed` with the error, then RetryLater so the runner backs off and
   eventually dead-letters).

The trade-off: a crash (or a lease lapsing) after the gateway accepted the message but
before step 3 committed leaves the row `sending`; after the lease the message is sent again.
So delivery is "at most one duplicate, in that window" rather than exactly once - the
database cannot make a remote call atomic with a commit. The repeat carries the same
`out_id` (our dedupe key), which real gateways use to drop it; the recording and console
providers do not, which is fine for what they are for.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core import metrics
from guahao.core.crypto import mask_phone
from guahao.notifications import port as notification_port
from guahao.notifications.models import SentMessage
from guahao.outbox.registry import JobContext, PermanentFailure, RetryLater

log = structlog.get_logger("guahao.notifications")

# longer than any gateway call takes (they time out within seconds), short enough that a
# message claimed by a worker that died goes out again within minutes
SEND_LEASE = dt.timedelta(minutes=2)


@dataclass(frozen=True)
class Outgoing:
    dedupe_key: str  # "<template>:<booking id>" and the like; also the gateway's out id
    template: str
    phone: str
    locale: str
    params: dict[str, str]
    account_id: int
    hospital_id: int | None = None
    booking_id: int | None = None


async def already_sent(ctx: JobContext, dedupe_key: str) -> bool:
    """A cheap early exit for retries, before composing the message."""
    async with ctx.db.read() as session:
        state = await session.scalar(select(SentMessage.state).where(SentMessage.dedupe_key == dedupe_key))
    return state == "sent"


async def deliver(ctx: JobContext, message: Outgoing) -> bool:
    """Send `message` unless its key was sent before. True when this call sent it."""
    attempt = await _claim(ctx, message)
    if attempt is None:
        return False
    sms = notification_port.Sms(phone=message.phone, template=message.template, params=message.params,
                                locale=message.locale, out_id=message.dedupe_key)
    try:
        await notification_port.from_providers(ctx.providers).send(sms)
    except notification_port.SmsRejected as exc:
        await _mark_failed(ctx, message.dedupe_key, attempt, _describe(exc, message.phone))
        raise PermanentFailure(f"sms rejected: {_describe(exc, message.phone)}") from exc
    except Exception as exc:  # any gateway trouble: timeouts, 5xx, connection errors
        reason = _describe(exc, message.phone)
        await _mark_failed(ctx, message.dedupe_key, attempt, reason)
        log.warning("sms_send_failed", key=message.dedupe_key, attempt=attempt, error=reason)
        raise RetryLater(f"sms provider: {reason}") from exc
    await _mark_sent(ctx, message.dedupe_key)
    metrics.SMS.labels("sent").inc()
    log.info("sms_sent", key=message.dedupe_key, template=message.template, attempt=attempt)
    return True


async def _claim(ctx: JobContext, message: Outgoing) -> int | None:
    """The attempt number we now own, or None when the message was sent already."""
    now = ctx.clock.now()
    lease = now + SEND_LEASE
    async with ctx.db.begin() as session:
        inserted = await session.scalar(
            _insert(session).values(
                dedupe_key=message.dedupe_key, template=message.template, account_id=message.account_id,
                hospital_id=message.hospital_id, booking_id=message.booking_id, locale=message.locale,
                state="sending", attempts=1, lease_until=lease, created_at=now, updated_at=now,
            ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(SentMessage.id)
        )
        if inserted is not None:
            return 1
        row = (await session.execute(
            select(SentMessage.id, SentMessage.state, SentMessage.attempts, SentMessage.lease_until)
            .where(SentMessage.dedupe_key == message.dedupe_key)
        )).one()
        if row.state == "sent":
            return None
        if row.state == "sending" and row.lease_until is not None and row.lease_until > now:
            raise RetryLater("being sent by another worker", delay=row.lease_until - now, count_attempt=False)
        taken = await session.execute(
            update(SentMessage)
            .where(SentMessage.id == row.id, SentMessage.state == row.state, SentMessage.attempts == row.attempts)
            .values(state="sending", attempts=row.attempts + 1, lease_until=lease, locale=message.locale,
                    updated_at=now)
        )
        if taken.rowcount != 1:
            raise RetryLater("claimed by another worker a moment ago", count_attempt=False)
        return row.attempts + 1


async def _mark_sent(ctx: JobContext, dedupe_key: str) -> None:
    now = ctx.clock.now()
    async with ctx.db.begin() as session:
        # unconditional on the attempt: if our lease lapsed and someone re-claimed, the
        # message did go out all the same
        await session.execute(
            update(SentMessage).where(SentMessage.dedupe_key == dedupe_key)
            .values(state="sent", sent_at=now, lease_until=None, last_error=None, updated_at=now)
        )


async def _mark_failed(ctx: JobContext, dedupe_key: str, attempt: int, reason: str) -> None:
    metrics.SMS.labels("failed").inc()
    now = ctx.clock.now()
    async with ctx.db.begin() as session:
        # only our own claim: a newer attempt (after our lease lapsed) or a success stays
        await session.execute(
            update(SentMessage)
            .where(SentMessage.dedupe_key == dedupe_key, SentMessage.attempts == attempt,
                   SentMessage.state == "sending")
            .values(state="failed", lease_until=None, last_error=reason[:500], updated_at=now)
        )


def _insert(session: AsyncSession):
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    return dialect.insert(SentMessage)


def _describe(exc: Exception, phone: str) -> str:
    """The error for logs and the outbox row, without the number a gateway may echo back."""
    text = f"{type(exc).__name__}: {exc}"
    for form in (phone, phone.removeprefix("+"), phone.removeprefix("+86")):  # longest first
        if form:
            text = text.replace(form, mask_phone(phone))
    return text[:300]
