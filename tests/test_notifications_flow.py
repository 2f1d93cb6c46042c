"""Notifications through the job runner: outbox rows from real booking actions, periodic
scans, retries with backoff (guahao.jobs.runner.drain with the frozen clock)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from guahao.accounts.sms import RecordingSms
from guahao.jobs import handlers
from guahao.jobs.runner import drain
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext
from tests.test_notifications import TOMORROW, FlakySms, book, local, world  # noqa: F401 (fixture)


def _ctx(db, clock, settings, sms) -> JobContext:
    handlers.load(settings)
    return JobContext(db=db, clock=clock, settings=settings, providers={"sms": sms})


async def test_confirmation_then_reminder_through_the_runner(db, clock, settings, world):
    sms = RecordingSms()
    ctx = _ctx(db, clock, settings, sms)
    await book(db, clock, world)

    await drain(ctx, periodic=True)
    await drain(ctx, periodic=True)
    assert [m.template for m in sms.sent] == ["booking_confirmed"]

    clock.set(local(TOMORROW - dt.timedelta(days=1), 18, 2))
    await drain(ctx, periodic=True)  # the scan enqueues the reminder, the same drain sends it
    clock.advance(minutes=5)
    await drain(ctx, periodic=True)
    assert [m.template for m in sms.sent] == ["booking_confirmed", "reminder"]
    async with db.read() as s:
        states = set(await s.scalars(select(OutboxMessage.state).where(OutboxMessage.topic.like("notify.%"))))
    assert states == {"done"}


async def test_a_failing_gateway_is_retried_by_the_runner_and_sends_once(db, clock, settings, world):
    flaky = FlakySms(failures=1, phone_in_error=world["phone"])
    ctx = _ctx(db, clock, settings, flaky)
    await book(db, clock, world)

    await drain(ctx)
    assert flaky.sent == []
    async with db.read() as s:
        row = await s.scalar(select(OutboxMessage).where(OutboxMessage.topic == "notify.booking_confirmed"))
    assert row.state == "pending" and row.attempts == 1 and world["phone"][3:] not in (row.last_error or "")

    clock.set(row.available_at + dt.timedelta(seconds=1))
    await drain(ctx)
    await drain(ctx)
    assert [m.template for m in flaky.sent] == ["booking_confirmed"]
