"""Shared steps of the payment tests: a schedule to book, holds, payments, and running the
payment jobs the way a worker would (directly, with the test clock)."""
from __future__ import annotations

import datetime as dt
import random

from sqlalchemy import func, select, update

from guahao.booking import actions as booking_actions
from guahao.booking.models import Booking
from guahao.core.crypto import lookup_hash
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import HANDLERS, JobContext
from guahao.patients.models import Patient, Person
from guahao.payments import jobs as payment_jobs  # noqa: F401  (registers the handlers)
from guahao.payments.invariants import check_money
from guahao.payments.models import Payment
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.conftest import remember_sensitive

DAY = dt.date(2026, 11, 21)  # two days after the test clock: cancellable, bookable
FEE = 1500  # 500 registration + 1000 consultation, in fen


async def make_world(db, clock, *, capacity: int = 5) -> dict:
    now = clock.now()
    hid = await make_hospital(db, now, name="协和医院")
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep)
    sch, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY,
                                     capacity=capacity)
    return {"hospital": hid, "department": dep, "doctor": doc, "schedule": sch, "slot": slots[0]}


async def new_patient(db, clock) -> tuple[int, str, int]:
    account_id, token = await make_account(db, clock.now())
    return account_id, token, await make_patient(db, clock.now(), account_id)


async def hold(db, clock, account_id: int, patient_id: int, slot_id: int) -> int:
    async with db.begin() as s:
        booking = await booking_actions.do_hold(s, account_id=account_id, patient_id=patient_id, slot_id=slot_id,
                                                now=clock.now())
        return booking.id


async def make_patients(db, now: dt.datetime, account_id: int, n: int) -> list[int]:
    """n verified patients (n people) of one account, in one transaction (fast setup)."""
    people, phones = [], []
    for _ in range(n):
        people.append(make_id_number())
        phones.append(f"+86137{random.randrange(10**8):08d}")
        remember_sensitive(people[-1], phones[-1][3:])
    async with db.begin() as s:
        persons = [Person(identity_hash=lookup_hash("identity", f"resident_id:{x}"), created_at=now) for x in people]
        s.add_all(persons)
        await s.flush()
        patients = [Patient(account_id=account_id, person_id=person.id, relationship="other", name="李四",
                            id_type="resident_id", id_number=x, birth_date=dt.date(1990, 5, 17), sex="M",
                            phone=phone, verification="verified", verified_at=now, created_at=now, updated_at=now)
                    for person, x, phone in zip(persons, people, phones)]
        s.add_all(patients)
        await s.flush()
        return [p.id for p in patients]


async def hold_many(db, clock, account_id: int, patient_ids: list[int], slot_id: int) -> list[int]:
    out = []
    for i in range(0, len(patient_ids), 50):
        async with db.begin() as s:
            for patient_id in patient_ids[i:i + 50]:
                booking = await booking_actions.do_hold(s, account_id=account_id, patient_id=patient_id,
                                                        slot_id=slot_id, now=clock.now())
                out.append(booking.id)
    return out


async def start_payment(client, token: str, booking_id: int):
    return await client.post(f"/api/v1/bookings/{booking_id}/payments", headers=auth(token))


async def run_jobs(ctx: JobContext, *topics: str) -> list[tuple[str, str]]:
    """Run the due outbox messages of `topics` once, as a worker would; returns
    (topic, result) pairs, result being 'done' or the exception's class name."""
    async with ctx.db.read() as s:
        due = list(await s.scalars(select(OutboxMessage).where(OutboxMessage.topic.in_(topics),
                                                               OutboxMessage.state == "pending")
                                   .order_by(OutboxMessage.id)))
    results = []
    for message in due:
        try:
            await HANDLERS[message.topic](ctx, message.payload)
        except Exception as exc:  # the runner would retry or dead-letter it
            results.append((message.topic, type(exc).__name__))
            continue
        async with ctx.db.begin() as s:
            await s.execute(update(OutboxMessage).where(OutboxMessage.id == message.id)
                            .values(state="done", done_at=ctx.clock.now()))
        results.append((message.topic, "done"))
    return results


async def assert_money_invariant(db) -> None:
    async with db.read() as s:
        assert await check_money(s) == []


async def count_rows(db, model, *where) -> int:
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(model).where(*where))


async def latest_payment(db, booking_id: int) -> Payment:
    async with db.read() as s:
        return await s.scalar(select(Payment).where(Payment.booking_id == booking_id).order_by(Payment.id.desc()))


async def get_booking(db, booking_id: int) -> Booking:
    async with db.read() as s:
        return await s.get(Booking, booking_id)
