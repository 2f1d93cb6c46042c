"""Hospital rules as the hold, cancellation and strikes apply them: the one-per-department
switch, default rules, which cancellations strike (and the preview before cancelling), the
kept cancellation deadline, strikes counted under the person lock, the I3 error mapping."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from guahao.booking import actions, errors, hospital_actions
from guahao.booking.models import Booking, Restriction
from guahao.catalog.models import HospitalRules
from guahao.outbox import service as outbox
from guahao.outbox.models import OutboxMessage
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_hospital
from tests.payments_support import make_patients

DAY = dt.date(2026, 11, 21)


async def _hold(db, now, account_id, patient_id, slot):
    async with db.begin() as s:
        return (await actions.do_hold(s, account_id=account_id, patient_id=patient_id, slot_id=slot, now=now)).id


async def _cancel(db, now, account_id, booking_id):
    async with db.begin() as s:
        return (await actions.do_cancel(s, account_id=account_id, booking_id=booking_id, now=now)).state


async def _slots(db, now, hid, dep, n, **kw):
    out = []
    for i in range(n):
        out += (await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None,
                                    day=DAY, period=("morning", "afternoon", "evening")[i % 3], **kw))[1]
    return out


async def _restrictions(db, **where):
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(Restriction).filter_by(**where))


async def test_one_per_department_per_day_off_allows_a_second_booking(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now, one_per_department_per_day=False)
    dep = await make_department(db, hid)
    a, b = await _slots(db, now, hid, dep, 2)
    account_id, _ = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    await _hold(db, now, account_id, patient, a)
    await _hold(db, now, account_id, patient, b)  # the unconditional index refused this before
    async with db.read() as s:
        assert set(await s.scalars(select(Booking.dedupe_day))) == {None}


async def test_one_per_department_per_day_on_is_enforced_by_the_index(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    a, b = await _slots(db, now, hid, dep, 2)
    account_id, _ = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    first = await _hold(db, now, account_id, patient, a)
    async with db.begin() as s:  # bypass the check: the database must still refuse a twin
        row = await s.get(Booking, first)
        with pytest.raises(IntegrityError):
            async with s.begin_nested():
                s.add(Booking(**{c: getattr(row, c) for c in ("hospital_id", "department_id", "doctor_id",
                                 "schedule_id", "slot_id", "account_id", "patient_id", "person_id", "visit_date",
                                 "dedupe_day", "state", "registration_fee", "consultation_fee", "amount_due",
                                 "created_at", "updated_at")}, booking_code="99999999"))
                await s.flush()
    with pytest.raises(errors.DuplicateBooking):
        await _hold(db, now, account_id, patient, b)


async def test_hospital_without_rules_row_books_with_defaults(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    async with db.begin() as s:
        await s.execute(delete(HospitalRules).where(HospitalRules.hospital_id == hid))
    dep = await make_department(db, hid)
    (slot,) = await _slots(db, now, hid, dep, 1)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    r = await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    assert dt.datetime.fromisoformat(r.json()["hold_expires_at"]) == now + dt.timedelta(minutes=15)


async def test_other_integrity_errors_are_not_called_duplicate_booking(db, clock, monkeypatch):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    a, b = await _slots(db, now, hid, dep, 2)
    account_id, _ = await make_account(db, now)
    first = await _hold(db, now, account_id, await make_patient(db, now, account_id), a)
    async with db.read() as s:
        code = (await s.get(Booking, first)).booking_code

    async def same_code(session, hospital_id):
        return code

    monkeypatch.setattr(actions, "_new_booking_code", same_code)
    with pytest.raises(IntegrityError):
        await _hold(db, now, account_id, await make_patient(db, now, account_id), b)


@pytest.mark.parametrize("policy, restricted", [("all", True), ("paid_only", False), ("none", False)])
async def test_cancelled_holds_count_per_the_hospital_rule(db, clock, policy, restricted):
    now = clock.now()
    hid = await make_hospital(db, now, strike_cancellations=policy, restriction_threshold=3)
    dep = await make_department(db, hid)
    slots = await _slots(db, now, hid, dep, 3)
    account_id, _ = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    for slot in slots:
        assert await _cancel(db, now, account_id, await _hold(db, now, account_id, patient, slot)) == "cancelled"
    assert await _restrictions(db, hospital_id=hid) == (1 if restricted else 0)


async def test_cancel_preview_shows_the_remaining_allowance(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now, restriction_threshold=3)
    dep = await make_department(db, hid)
    slots = await _slots(db, now, hid, dep, 3)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    ids = [await _hold(db, now, account_id, patient, slots[0])]
    await _cancel(db, now, account_id, ids[0])
    ids.append(await _hold(db, now, account_id, patient, slots[1]))
    await _cancel(db, now, account_id, ids[1])
    last = await _hold(db, now, account_id, patient, slots[2])
    r = await client.get(f"/api/v1/bookings/{last}/cancel-preview", headers=auth(token))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["can_cancel"] and body["counts_as_strike"]
    assert (body["strikes_used"], body["strikes_allowed"]) == (2, 3)
    assert body["restriction_if_cancelled"] is True and body["restriction_days"] == 30
    other_account, other_token = await make_account(db, now)
    assert (await client.get(f"/api/v1/bookings/{last}/cancel-preview", headers=auth(other_token))).status_code == 404


async def test_booking_keeps_the_cancellation_deadline_it_was_made_under(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    (slot,) = await _slots(db, now, hid, dep, 1, registration_fee=0, consultation_fee=0)
    account_id, token = await make_account(db, now)
    booking_id = await _hold(db, now, account_id, await make_patient(db, now, account_id), slot)
    before = (await client.get(f"/api/v1/bookings/{booking_id}", headers=auth(token))).json()["cancel_deadline"]
    async with db.begin() as s:  # the hospital now stops online cancellation a week ahead
        await s.execute(update(HospitalRules).where(HospitalRules.hospital_id == hid)
                        .values(cancel_minutes_before_visit_day=10080))
    after = (await client.get(f"/api/v1/bookings/{booking_id}", headers=auth(token))).json()
    assert after["cancel_deadline"] == before and after["allowed_actions"] == ["cancel"]
    assert await _cancel(db, now, account_id, booking_id) == "cancelled"


async def test_concurrent_strikes_restrict_exactly_once(db, clock):
    """Two confirmed bookings of one person cancelled at once, one strike before: the third
    strike restricts, once. Counted without the person lock, each saw only its own."""
    now = clock.now()
    for _ in range(5):
        hid = await make_hospital(db, now, restriction_threshold=3, one_per_department_per_day=False)
        dep = await make_department(db, hid)
        slots = await _slots(db, now, hid, dep, 3, registration_fee=0, consultation_fee=0)
        id_number = make_id_number()
        holders = []
        for _ in range(3):  # the same person through three accounts
            account_id, _ = await make_account(db, now)
            holders.append((account_id, await make_patient(db, now, account_id, id_number=id_number)))
        ids = [await _hold(db, now, a, p, s) for (a, p), s in zip(holders, slots)]
        await _cancel(db, now, holders[0][0], ids[0])
        results = await asyncio.gather(_cancel(db, now, holders[1][0], ids[1]), _cancel(db, now, holders[2][0], ids[2]))
        assert results == ["cancelled", "cancelled"]
        assert await _restrictions(db, hospital_id=hid) == 1


async def test_concurrent_no_show_marking_and_cancel_restrict_once(db, clock):
    now = clock.now()
    later = dt.datetime(2026, 11, 21, 6, 0, tzinfo=dt.UTC)  # 14:00 in Shanghai, visit day over
    for _ in range(4):
        hid = await make_hospital(db, now, restriction_threshold=2)
        dep = await make_department(db, hid)
        (past,) = await _slots(db, now, hid, dep, 1, registration_fee=0, consultation_fee=0)
        _, (future,) = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None,
                                           day=DAY + dt.timedelta(days=2), registration_fee=0, consultation_fee=0)
        account_id, _ = await make_account(db, now)
        patients = await make_patients(db, now, account_id, 1)
        await _hold(db, now, account_id, patients[0], past)
        b = await _hold(db, now, account_id, patients[0], future)

        async def mark():
            async with db.begin() as s:
                return await hospital_actions.do_mark_no_shows(s, now=later)

        marked, state = await asyncio.gather(mark(), _cancel(db, later, account_id, b))
        assert state == "cancelled"
        assert await _restrictions(db, hospital_id=hid) == 1


async def test_outbox_enqueue_of_a_concurrent_duplicate_is_a_no_op(db, clock):
    now = clock.now()

    async def add():
        async with db.begin() as s:
            await outbox.enqueue(s, topic="test.topic", dedupe_key="same-key", payload={}, now=now)
            await asyncio.sleep(0.05)  # both transactions are open at once

    await asyncio.gather(*(add() for _ in range(8)))
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxMessage)
                              .where(OutboxMessage.dedupe_key == "same-key")) == 1


async def test_booking_keeps_the_strike_rule_it_was_made_under(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now, strike_cancellations="none", restriction_threshold=1)
    dep = await make_department(db, hid)
    (slot,) = await _slots(db, now, hid, dep, 1)
    account_id, _ = await make_account(db, now)
    booking_id = await _hold(db, now, account_id, await make_patient(db, now, account_id), slot)
    async with db.begin() as s:  # the hospital tightens the rule after the booking was made
        await s.execute(update(HospitalRules).where(HospitalRules.hospital_id == hid)
                        .values(strike_cancellations="all"))
    assert await _cancel(db, now, account_id, booking_id) == "cancelled"
    assert await _restrictions(db, hospital_id=hid) == 0


async def test_rules_api_has_strike_cancellations_and_patient_sms(client, db, clock):
    from tests.builders import make_staff

    now = clock.now()
    hid = await make_hospital(db, now)
    _, token = await make_staff(db, now, role="hospital_admin", hospital_id=hid)
    current = (await client.get(f"/api/v1/staff/hospitals/{hid}/rules", headers=auth(token))).json()
    assert current["strike_cancellations"] == "all" and current["sms_to_patient_phone"] is True
    body = {k: v for k, v in current.items() if k not in ("hospital_id", "updated_at")}
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/rules", headers=auth(token),
                         json={**body, "strike_cancellations": "paid_only", "sms_to_patient_phone": False})
    assert r.status_code == 200, r.text
    assert r.json()["strike_cancellations"] == "paid_only" and r.json()["sms_to_patient_phone"] is False
    bad = await client.put(f"/api/v1/staff/hospitals/{hid}/rules", headers=auth(token),
                           json={**body, "strike_cancellations": "sometimes"})
    assert bad.status_code == 422
