"""Notifications: every message sent once per dedupe key, to the account holder, in their
language; reminders and hold warnings scheduled by scans; provider failures retried.

Handlers are called directly with a JobContext (what the runner does), with the outbox
payloads that real booking actions wrote.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import random

import pytest
from sqlalchemy import select

from guahao.accounts import service as accounts_service
from guahao.accounts.sms import ConsoleSms, RecordingSms
from guahao.booking import actions, hospital_actions
from guahao.booking.lifecycle import Actor
from guahao.catalog.models import HospitalRules
from guahao.core.clock import SHANGHAI
from guahao.notifications import delivery, service, templates
from guahao.notifications import jobs as notify_jobs
from guahao.notifications.models import SentMessage
from guahao.notifications.port import RecordingNotifier
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import HANDLERS, PERIODIC, JobContext, RetryLater
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.conftest import remember_sensitive

TOMORROW = dt.date(2026, 11, 20)  # the clock fixture stands at 2026-11-19 10:00 in Shanghai


def local(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=SHANGHAI)


async def new_account(db, now, locale: str = "zh-CN") -> tuple[int, str]:
    phone = f"+86137{random.randrange(10**8):08d}"
    remember_sensitive(phone[3:])
    account_id, _ = await make_account(db, now, phone=phone)
    if locale != "zh-CN":
        async with db.begin() as s:
            await accounts_service.do_set_locale(s, account_id, locale)
    return account_id, phone


@pytest.fixture
async def world(db, clock):
    now = clock.now()
    # these tests follow the account holder's messages; the copies to a patient's own phone
    # (on by default) are tested in test_notifications_patient_phone.py
    hid = await make_hospital(db, now, name="北京协和医院", sms_to_patient_phone=False)
    dep = await make_department(db, hid, name="心内科", location="门诊楼2层B区")
    doc = await make_doctor(db, hid, dep, name="张伟")
    sch, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=TOMORROW,
                                     capacity=8, bands=8)
    account_id, phone = await new_account(db, now)
    return {"hospital": hid, "department": dep, "doctor": doc, "schedule": sch, "slots": slots,
            "account": account_id, "phone": phone}


@pytest.fixture
def sms() -> RecordingSms:
    return RecordingSms()


@pytest.fixture
def ctx(db, clock, settings, sms) -> JobContext:
    return JobContext(db=db, clock=clock, settings=settings, providers={"sms": sms})


async def book(db, clock, world, *, slot: int = 0, confirm: bool = True, account: int | None = None) -> int:
    account = account or world["account"]
    patient = await make_patient(db, clock.now(), account)
    async with db.begin() as s:
        booking = await actions.do_hold(s, account_id=account, patient_id=patient,
                                        slot_id=world["slots"][slot], now=clock.now())
    if confirm:
        async with db.begin() as s:
            await actions.do_confirm(s, booking.id, now=clock.now())
    return booking.id


async def outbox_payloads(db, topic: str) -> list[dict]:
    async with db.read() as s:
        return list(await s.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == topic)
                                    .order_by(OutboxMessage.id)))


async def only_payload(db, topic: str) -> dict:
    payloads = await outbox_payloads(db, topic)
    assert len(payloads) == 1, payloads
    return payloads[0]


async def run_often(handler, ctx, payload) -> None:
    """Three times in a row, three at once, and once more: at-least-once delivery at its worst."""
    for _ in range(3):
        await handler(ctx, payload)
    results = await asyncio.gather(*(handler(ctx, payload) for _ in range(3)), return_exceptions=True)
    assert all(r is None or isinstance(r, RetryLater) for r in results), results
    await handler(ctx, payload)


# --- registration ------------------------------------------------------------------------------

def test_every_notify_topic_has_a_handler_and_the_scans_are_periodic():
    for topic in ("notify.booking_confirmed", "notify.booking_cancelled", "notify.booking_revoked",
                  "notify.booking_expired", "notify.restriction_applied", "notify.hold_expiring",
                  "notify.reminder", "notify.payment_late_refund", "notify.scan_expiring_holds",
                  "notify.scan_reminders"):
        assert HANDLERS[topic].__module__ == "guahao.notifications.jobs", topic
    every = {job.topic: job.every for job in PERIODIC}
    assert every["notify.scan_expiring_holds"] == dt.timedelta(minutes=1)
    assert every["notify.scan_reminders"] == dt.timedelta(minutes=5)


# --- each state change: exactly one message ---------------------------------------------------------

async def test_confirmation_is_sent_once_to_the_account_holder(db, clock, ctx, sms, world):
    bid = await book(db, clock, world)
    payload = await only_payload(db, "notify.booking_confirmed")

    await run_often(notify_jobs.booking_confirmed, ctx, payload)

    assert len(sms.sent) == 1
    message = sms.sent[0]
    assert message.phone == world["phone"] and message.template == "booking_confirmed"
    async with db.read() as s:
        row = await s.scalar(select(SentMessage).where(SentMessage.booking_id == bid))
        assert row.state == "sent" and row.dedupe_key == f"booking_confirmed:{bid}"
    assert message.params["patient"] == "王*"
    assert message.params["hospital"] == "北京协和医院" and message.params["department"] == "心内科"
    assert message.params["doctor"] == "张伟" and message.params["location"] == "门诊楼2层B区"
    assert message.params["time"] == "11月20日 上午 08:00-08:30"
    assert message.params["visit_no"] == "1" and len(message.params["code"]) == 8


async def test_cancellation_of_a_paid_booking_says_the_fee_is_refunded(db, clock, ctx, sms, world):
    bid = await book(db, clock, world)
    async with db.begin() as s:
        await actions.do_cancel(s, account_id=world["account"], booking_id=bid, now=clock.now())
    payload = await only_payload(db, "notify.booking_cancelled")

    await run_often(notify_jobs.booking_cancelled, ctx, payload)

    assert [m.template for m in sms.sent] == ["booking_cancelled"]
    assert sms.sent[0].params["refund"] == "费用（挂号费 ¥5.00 + 诊查费 ¥10.00，合计 ¥15.00）将原路退回"


async def test_revoked_by_suspension_tells_paid_and_unpaid_bookings_apart(db, clock, ctx, sms, world):
    paid = await book(db, clock, world, slot=0)
    unpaid = await book(db, clock, world, slot=1, confirm=False)
    async with db.begin() as s:
        await hospital_actions.do_suspend(s, schedule_id=world["schedule"], hospital_id=world["hospital"],
                                          reason="医生临时出诊", actor=Actor("staff", None), now=clock.now())
    payloads = await outbox_payloads(db, "notify.booking_revoked")
    assert {p["booking_id"] for p in payloads} == {paid, unpaid}

    for payload in payloads:
        await run_often(notify_jobs.booking_revoked, ctx, payload)

    assert len(sms.sent) == 2
    refund = {m.params["time"]: m.params["refund"] for m in sms.sent}
    assert refund == {"11月20日 上午 08:00-08:30": "费用（挂号费 ¥5.00 + 诊查费 ¥10.00，合计 ¥15.00）将原路退回",
                      "11月20日 上午 08:30-09:00": "未产生费用"}


async def test_expired_hold_is_told_once(db, clock, ctx, sms, world):
    await book(db, clock, world, confirm=False)
    clock.advance(minutes=16)
    async with db.begin() as s:
        assert await actions.do_expire_due(s, now=clock.now()) == 1
    payload = await only_payload(db, "notify.booking_expired")

    await run_often(notify_jobs.booking_expired, ctx, payload)

    assert [m.template for m in sms.sent] == ["booking_expired"]


async def _three_strikes(db, clock, world) -> None:
    """Three confirmed bookings of one patient, each cancelled: the blacklist threshold."""
    now = clock.now()
    patient = await make_patient(db, now, world["account"])
    for offset in range(3):
        _, slots = await make_schedule(db, now, hospital_id=world["hospital"], department_id=world["department"],
                                       doctor_id=None, day=TOMORROW + dt.timedelta(days=1 + offset))
        async with db.begin() as s:
            booking = await actions.do_hold(s, account_id=world["account"], patient_id=patient, slot_id=slots[0],
                                            now=now)
            await actions.do_confirm(s, booking.id, now=now)
        async with db.begin() as s:
            await actions.do_cancel(s, account_id=world["account"], booking_id=booking.id, now=now)


async def test_restriction_is_told_once_with_its_end_date(db, clock, ctx, sms, world):
    await _three_strikes(db, clock, world)
    payload = await only_payload(db, "notify.restriction_applied")

    await run_often(notify_jobs.restriction_applied, ctx, payload)

    assert [m.template for m in sms.sent] == ["restriction_applied"]
    assert sms.sent[0].phone == world["phone"]
    assert sms.sent[0].params == {"patient": "王*", "hospital": "北京协和医院", "until": "2026年12月19日 10:00"}


async def test_late_payment_refund_is_told(db, clock, ctx, sms, world):
    bid = await book(db, clock, world, confirm=False)
    clock.advance(minutes=16)
    # enqueued by payments when a payment arrives after the hold ended
    await run_often(notify_jobs.payment_late_refunded, ctx, {"booking_id": bid})
    assert [m.template for m in sms.sent] == ["payment_late_refunded"]
    assert sms.sent[0].params["fees"] == "挂号费 ¥5.00 + 诊查费 ¥10.00，合计 ¥15.00"
    text = templates.render("payment_late_refunded", sms.sent[0].params, "zh-CN")
    assert "的费用（挂号费 ¥5.00 + 诊查费 ¥10.00，合计 ¥15.00）到账时锁号已超时" in text


# --- language, stale messages, console ------------------------------------------------------------

async def test_an_english_account_gets_english(db, clock, ctx, world):
    account, phone = await new_account(db, clock.now(), locale="en")
    bid = await book(db, clock, world, account=account)
    notifier = RecordingNotifier()
    ctx.providers["notifications"] = notifier

    await notify_jobs.booking_confirmed(ctx, await only_payload(db, "notify.booking_confirmed"))

    [sms] = notifier.sent
    assert sms.phone == phone and sms.locale == "en" and sms.gateway_template == "booking_confirmed_en"
    assert sms.out_id == f"booking_confirmed:{bid}"  # the gateway dedupes on it
    assert sms.params["time"] == "20 Nov, morning, 08:00-08:30"
    assert sms.text.startswith("Booking confirmed for 王*: 北京协和医院, 心内科, 张伟, 20 Nov, morning, 08:00-08:30")


async def test_a_confirmation_for_a_booking_cancelled_since_is_not_sent(db, clock, ctx, sms, world):
    bid = await book(db, clock, world)
    async with db.begin() as s:
        await actions.do_cancel(s, account_id=world["account"], booking_id=bid, now=clock.now())
    await notify_jobs.booking_confirmed(ctx, await only_payload(db, "notify.booking_confirmed"))
    assert sms.sent == []


async def test_console_prints_the_text_to_a_masked_number(db, clock, ctx, world, capsys):
    ctx.providers["sms"] = ConsoleSms()
    await book(db, clock, world)
    await notify_jobs.booking_confirmed(ctx, await only_payload(db, "notify.booking_confirmed"))
    err = capsys.readouterr().err
    assert "预约成功" in err and "王*" in err and "11月20日 上午 08:00-08:30" in err
    assert world["phone"][3:] not in err and f"{world['phone'][3:6]}****{world['phone'][-4:]}" in err


# --- provider failures and crashes --------------------------------------------------------------------

class FlakySms(RecordingSms):
    def __init__(self, failures: int, phone_in_error: str) -> None:
        super().__init__()
        self.failures, self.phone_in_error = failures, phone_in_error

    async def send(self, phone, template, params) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError(f"gateway timeout sending to {self.phone_in_error}")
        await super().send(phone, template, params)


async def test_provider_failure_is_retried_later_and_then_sent_once(db, clock, ctx, world):
    flaky = FlakySms(failures=2, phone_in_error=world["phone"])
    ctx.providers["sms"] = flaky
    bid = await book(db, clock, world)
    payload = await only_payload(db, "notify.booking_confirmed")

    for _ in range(2):
        with pytest.raises(RetryLater) as failure:
            await notify_jobs.booking_confirmed(ctx, payload)
        assert world["phone"][3:] not in str(failure.value)
    async with db.read() as s:
        row = await s.scalar(select(SentMessage).where(SentMessage.booking_id == bid))
    assert row.state == "failed" and row.attempts == 2 and world["phone"][3:] not in row.last_error

    await run_often(notify_jobs.booking_confirmed, ctx, payload)
    assert len(flaky.sent) == 1


async def test_a_claim_left_by_a_dead_worker_is_taken_over_after_its_lease(db, clock, ctx, sms, world):
    bid = await book(db, clock, world)
    payload = await only_payload(db, "notify.booking_confirmed")
    # a worker claimed the message and died (before or after the gateway call: we cannot know)
    async with db.read() as s:
        message = await service.compose_booking_message(s, "booking_confirmed", bid, clock.now())
    assert await delivery._claim(ctx, message) == 1

    with pytest.raises(RetryLater):  # its lease still runs: someone may be sending right now
        await notify_jobs.booking_confirmed(ctx, payload)
    assert sms.sent == []
    clock.advance(seconds=delivery.SEND_LEASE.total_seconds() + 1)
    await run_often(notify_jobs.booking_confirmed, ctx, payload)
    assert len(sms.sent) == 1


# --- scans ---------------------------------------------------------------------------------------

async def test_reminders_go_out_after_the_local_reminder_time_once_per_confirmed_booking(db, clock, ctx, sms, world):
    first = await book(db, clock, world, slot=0)
    second = await book(db, clock, world, slot=1)
    await book(db, clock, world, slot=2, confirm=False)  # a hold: no reminder
    cancelled = await book(db, clock, world, slot=3)
    async with db.begin() as s:
        await actions.do_cancel(s, account_id=world["account"], booking_id=cancelled, now=clock.now())
    _, later = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                   doctor_id=None, day=TOMORROW + dt.timedelta(days=1))
    await book(db, clock, {**world, "slots": later})  # the day after tomorrow: not yet

    clock.set(local(TOMORROW - dt.timedelta(days=1), 17, 59))
    await notify_jobs.scan_reminders(ctx, {})
    assert await outbox_payloads(db, "notify.reminder") == []

    clock.set(local(TOMORROW - dt.timedelta(days=1), 18, 0))  # the default reminder time
    await notify_jobs.scan_reminders(ctx, {})
    clock.advance(minutes=5)
    await notify_jobs.scan_reminders(ctx, {})
    payloads = await outbox_payloads(db, "notify.reminder")
    assert sorted(p["booking_id"] for p in payloads) == [first, second]

    for payload in payloads:
        await run_often(notify_jobs.reminder, ctx, payload)
    assert [m.template for m in sms.sent] == ["reminder", "reminder"]
    assert {m.params["time"] for m in sms.sent} == {"11月20日 上午 08:00-08:30", "11月20日 上午 08:30-09:00"}


async def test_reminder_time_is_the_hospitals_own(db, clock, ctx, world):
    async with db.begin() as s:
        rules = await s.get(HospitalRules, world["hospital"])
        rules.reminder_time = dt.time(9, 30)
    bid = await book(db, clock, world)  # booked at 10:00 local, after today's 09:30 reminder time
    await notify_jobs.scan_reminders(ctx, {})
    assert [p["booking_id"] for p in await outbox_payloads(db, "notify.reminder")] == [bid]


async def test_a_reminder_for_a_booking_cancelled_after_the_scan_is_dropped(db, clock, ctx, sms, world):
    bid = await book(db, clock, world)
    clock.set(local(TOMORROW - dt.timedelta(days=1), 19, 0))
    await notify_jobs.scan_reminders(ctx, {})
    async with db.begin() as s:
        await actions.do_cancel(s, account_id=world["account"], booking_id=bid, now=clock.now())
    await notify_jobs.reminder(ctx, await only_payload(db, "notify.reminder"))
    assert sms.sent == []


async def test_hold_warning_three_minutes_before_the_deadline(db, clock, ctx, sms, world):
    bid = await book(db, clock, world, confirm=False)  # held at 10:00 local, deadline 10:15

    clock.advance(minutes=11)
    await notify_jobs.scan_expiring_holds(ctx, {})
    assert await outbox_payloads(db, "notify.hold_expiring") == []

    clock.advance(minutes=1, seconds=30)  # 10:12:30: the deadline is 2.5 minutes away
    await notify_jobs.scan_expiring_holds(ctx, {})
    clock.advance(minutes=1)
    await notify_jobs.scan_expiring_holds(ctx, {})
    payload = await only_payload(db, "notify.hold_expiring")
    assert payload["booking_id"] == bid

    await run_often(notify_jobs.hold_expiring, ctx, payload)
    assert [m.template for m in sms.sent] == ["hold_expiring"]
    assert sms.sent[0].params["deadline"] == "10:15"
    async with db.read() as s:
        keys = list(await s.scalars(select(OutboxMessage.dedupe_key).where(OutboxMessage.topic == "notify.hold_expiring")))
    assert keys == [f"notify.hold_expiring:{bid}"]


async def test_a_hold_warning_after_payment_is_dropped(db, clock, ctx, sms, world):
    bid = await book(db, clock, world, confirm=False)
    clock.advance(minutes=13)
    await notify_jobs.scan_expiring_holds(ctx, {})
    async with db.begin() as s:
        await actions.do_confirm(s, bid, now=clock.now())
    await notify_jobs.hold_expiring(ctx, await only_payload(db, "notify.hold_expiring"))
    assert sms.sent == []
