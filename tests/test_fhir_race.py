"""500 simultaneous $hold calls through FHIR on one band of 20 seats: exactly 20 pending
Appointments with distinct visit numbers, every other answer only a fatal / not-found
OperationOutcome. The facade adds no path around the seat claim (I1, I2)."""
from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from sqlalchemy import func, select

from guahao.booking.models import Booking
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.fhir_support import BASE, DAY, entries, parameters

CALLERS, SEATS = 500, 20


async def test_500_concurrent_holds_on_20_seats(client, db, clock):
    now = clock.now()
    hospital = await make_hospital(db, now)
    department = await make_department(db, hospital)
    doctor = await make_doctor(db, hospital, department)
    _, [slot] = await make_schedule(db, now, hospital_id=hospital, department_id=department, doctor_id=doctor,
                                    day=DAY, capacity=SEATS)
    callers = []
    for _ in range(CALLERS):
        account, token = await make_account(db, now)
        callers.append((token, await make_patient(db, now, account)))

    async def hold(token: str, patient: int):
        body = parameters(appointment_reference=f"Appointment/proposed-{slot}", patient_reference=f"Patient/{patient}")
        return await client.post(f"{BASE}/Appointment/$hold", json=body,
                                 headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})

    answers = await asyncio.gather(*(hold(t, p) for t, p in callers))

    outcomes = Counter()
    visit_numbers = []
    for response in answers:
        found = entries(response.json())
        kinds = [r["resourceType"] for r in found]
        if response.status_code == 200:
            [appointment] = [r for r in found if r["resourceType"] == "Appointment"]
            assert appointment["status"] == "pending"
            visit_numbers += [i["value"] for i in appointment["identifier"] if i["system"].endswith("visit-number")]
            outcomes["pending"] += 1
        else:
            assert kinds == ["OperationOutcome"], kinds
            issue = found[0]["issue"][0]
            outcomes[(response.status_code, issue["severity"], issue["code"])] += 1
    assert outcomes == {"pending": SEATS, (409, "fatal", "not-found"): CALLERS - SEATS}, outcomes
    assert sorted(map(int, visit_numbers)) == list(range(1, SEATS + 1))
    async with db.read() as session:
        held = await session.scalar(select(func.count()).select_from(Booking).where(Booking.slot_id == slot,
                                                                                    Booking.state == "held"))
    assert held == SEATS
