"""Races on the database: many simultaneous clients, exact outcomes (I1, I2, I3, I7)."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter

from sqlalchemy import func, select

from guahao.booking.models import Booking
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)


async def _hold(client, token, slot, patient, key=None):
    return await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": key or uuid.uuid4().hex})


async def test_last_slot_race_200_clients_capacity_5(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=5)
    clients = []
    for _ in range(200):
        account_id, token = await make_account(db, now)
        clients.append((token, await make_patient(db, now, account_id)))

    answers = await asyncio.gather(*(_hold(client, t, slots[0], p) for t, p in clients))

    codes = Counter(r.json().get("code", r.status_code) for r in answers)
    assert codes == {201: 5, "slot_sold_out": 195}, codes
    visit_nos = [r.json()["visit_no"] for r in answers if r.status_code == 201]
    assert sorted(visit_nos) == [1, 2, 3, 4, 5]
    async with db.read() as s:
        live = await s.scalar(select(func.count()).select_from(Booking).where(Booking.slot_id == slots[0],
                                                                             Booking.state == "held"))
    assert live == 5


async def test_same_person_two_accounts_50_holds_one_department_day(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    slots = []
    for i in range(50):
        doc = await make_doctor(db, hid, dep, name=f"医生{i}")
        slots += (await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY))[1]
    id_number = make_id_number()
    holders = []
    for _ in range(2):
        account_id, token = await make_account(db, now)
        holders.append((token, await make_patient(db, now, account_id, id_number=id_number)))

    answers = await asyncio.gather(*(_hold(client, holders[i % 2][0], slots[i], holders[i % 2][1])
                                     for i in range(50)))

    codes = Counter(r.json().get("code", r.status_code) for r in answers)
    assert codes == {201: 1, "duplicate_booking": 49}, codes


async def test_same_idempotency_key_20_times_concurrently(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None, day=DAY, capacity=5)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)

    answers = await asyncio.gather(*(_hold(client, token, slots[0], patient, key="rush-1") for _ in range(20)))

    assert {r.status_code for r in answers} == {201}
    assert len({r.text for r in answers}) == 1
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Booking)) == 1
