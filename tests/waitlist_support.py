"""Builders and checks for the 候补 (waitlist) tests."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

import guahao.waitlist.jobs  # noqa: F401  (registers the promoter handlers)
from guahao.booking import actions as booking_actions
from guahao.booking.models import Booking
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import HANDLERS, JobContext
from guahao.waitlist import actions as waitlist_actions
from guahao.waitlist import invariants
from guahao.waitlist import rules as waitlist_rules
from guahao.waitlist.models import WaitlistEntry
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)
WAITLIST_TOPICS = ("seats.freed", "waitlist.promote", "schedule.suspended", "schedule.resumed")


async def make_world(db, clock, *, capacity: int = 2, bands: int = 1, **rules) -> dict:
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    schedule, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY,
                                          capacity=capacity, bands=bands)
    if rules:
        async with db.begin() as s:
            await waitlist_rules.do_set_rules(s, hid, now=now, **rules)
    return {"hospital": hid, "department": dep, "doctor": doc, "schedule": schedule, "slots": slots}


async def new_patient(db, clock, **kw) -> tuple[int, str, int]:
    account_id, token = await make_account(db, clock.now())
    return account_id, token, await make_patient(db, clock.now(), account_id, **kw)


async def hold(db, clock, account_id: int, patient_id: int, slot_id: int):
    async with db.begin() as s:
        return (await booking_actions.do_hold(s, account_id=account_id, patient_id=patient_id, slot_id=slot_id,
                                              now=clock.now())).id


async def confirm(db, clock, booking_id: int) -> None:
    async with db.begin() as s:
        await booking_actions.do_confirm(s, booking_id, now=clock.now())


async def sell_out(db, clock, world, *, paid: bool = True) -> list[tuple[int, str, int, int]]:
    """Every platform seat held (and paid): [(account, token, patient, booking)]."""
    sold = []
    async with db.read() as s:
        from guahao.scheduling import seats
        free = await seats.free_platform_seats(s, world["schedule"], clock.now())
    for i in range(free):
        account, token, patient = await new_patient(db, clock)
        booking = await hold(db, clock, account, patient, world["slots"][i % len(world["slots"])])
        if paid:
            await confirm(db, clock, booking)
        sold.append((account, token, patient, booking))
    return sold


async def join(db, clock, account_id: int, patient_id: int, schedule_id: int) -> int:
    async with db.begin() as s:
        return (await waitlist_actions.do_join(s, account_id=account_id, patient_id=patient_id,
                                               schedule_id=schedule_id, now=clock.now())).id


async def waiters(db, clock, world, n: int) -> list[tuple[int, str, int, int]]:
    """n patients joined in order: [(account, token, patient, entry)]."""
    out = []
    for _ in range(n):
        account, token, patient = await new_patient(db, clock)
        out.append((account, token, patient, await join(db, clock, account, patient, world["schedule"])))
    return out


async def run_jobs(ctx: JobContext, topics=WAITLIST_TOPICS) -> int:
    """Run the due messages of `topics` once each, as a worker would (until none is due)."""
    ran = 0
    while True:
        async with ctx.db.read() as s:
            due = list(await s.scalars(select(OutboxMessage).where(
                OutboxMessage.topic.in_(topics), OutboxMessage.state == "pending",
                OutboxMessage.available_at <= ctx.clock.now()).order_by(OutboxMessage.id)))
        if not due:
            return ran
        for message in due:
            await HANDLERS[message.topic](ctx, message.payload)
            async with ctx.db.begin() as s:
                await s.execute(update(OutboxMessage).where(OutboxMessage.id == message.id)
                                .values(state="done", done_at=ctx.clock.now()))
            ran += 1


async def entries(db, schedule_id: int) -> list[WaitlistEntry]:
    async with db.read() as s:
        return list(await s.scalars(select(WaitlistEntry).where(WaitlistEntry.schedule_id == schedule_id)
                                    .order_by(WaitlistEntry.position)))


async def states(db, schedule_id: int) -> list[str]:
    return [e.state for e in await entries(db, schedule_id)]


async def booking(db, booking_id: int) -> Booking:
    async with db.read() as s:
        return await s.get_one(Booking, booking_id)


async def outbox_topics(db, topic: str) -> list[dict]:
    async with db.read() as s:
        return list(await s.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == topic)
                                    .order_by(OutboxMessage.id)))


async def check(db, clock) -> None:
    """The waitlist invariants (W1-W8) hold right now."""
    async with db.read() as s:
        problems = await invariants.check(s, now=clock.now())
    assert problems == [], problems
