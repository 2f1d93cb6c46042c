"""Holding a slot (锁号): the answer, the fee, and every refusal with its own code."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from guahao.booking.models import BookingEvent
from guahao.outbox.models import OutboxMessage
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)


@pytest.fixture
async def world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep)
    sch, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=3)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    return {"hospital": hid, "department": dep, "doctor": doc, "schedule": sch, "slot": slots[0],
            "account": account_id, "token": token, "patient": patient}


async def hold(client, token, slot, patient, key=None, **headers):
    return await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                              headers={**auth(token), "Idempotency-Key": key or uuid.uuid4().hex, **headers})


async def test_hold_answers_visit_number_code_amount_and_deadline(client, world, clock):
    r = await hold(client, world["token"], world["slot"], world["patient"])
    assert r.status_code == 201, r.text
    b = r.json()
    assert b["state"] == "held" and b["fhir_status"] == "pending"
    assert b["visit_no"] == 1
    assert len(b["booking_code"]) == 8 and b["booking_code"].isdigit()
    assert b["amount_due"] == 1500 and b["registration_fee"] == 500 and b["consultation_fee"] == 1000
    assert dt.datetime.fromisoformat(b["hold_expires_at"]) == clock.now() + dt.timedelta(minutes=15)
    assert b["allowed_actions"] == ["pay", "cancel"]
    assert b["patient"]["name"] == "王*" and "*" in b["patient"]["id_number"]


async def test_client_sent_amount_is_ignored(client, world):
    r = await client.post("/api/v1/bookings", json={"slot_id": world["slot"], "patient_id": world["patient"],
                                                    "amount_due": 1},
                          headers={**auth(world["token"]), "Idempotency-Key": "k1"})
    assert r.status_code == 201 and r.json()["amount_due"] == 1500


async def test_free_registration_is_confirmed_at_once_with_outbox_rows(client, db, clock, world):
    _, slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                   doctor_id=None, day=DAY + dt.timedelta(days=1), registration_fee=0,
                                   consultation_fee=0)
    r = await hold(client, world["token"], slots[0], world["patient"])
    assert r.status_code == 201 and r.json()["state"] == "confirmed" and r.json()["hold_expires_at"] is None
    async with db.read() as s:
        topics = set(await s.scalars(select(OutboxMessage.topic).where(OutboxMessage.hospital_id == world["hospital"])))
    assert "notify.booking_confirmed" in topics


async def test_idempotency_key_is_required(client, world):
    r = await client.post("/api/v1/bookings", json={"slot_id": world["slot"], "patient_id": world["patient"]},
                          headers=auth(world["token"]))
    assert r.status_code == 400 and r.json()["code"] == "idempotency_key_required"


async def test_same_key_different_body_is_refused(client, db, clock, world):
    first = await hold(client, world["token"], world["slot"], world["patient"], key="same")
    assert first.status_code == 201
    other = await make_patient(db, clock.now(), world["account"], name="李四")
    r = await hold(client, world["token"], world["slot"], other, key="same")
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_reused"


async def test_same_key_replays_first_answer(client, world):
    a = await hold(client, world["token"], world["slot"], world["patient"], key="k")
    b = await hold(client, world["token"], world["slot"], world["patient"], key="k")
    assert a.status_code == b.status_code == 201 and a.json() == b.json()


async def test_unknown_slot_and_other_accounts_patient_are_404(client, db, clock, world):
    r = await hold(client, world["token"], 999999, world["patient"])
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    _, other_token = await make_account(db, clock.now())
    r = await hold(client, other_token, world["slot"], world["patient"])
    assert r.status_code == 404


async def test_onsite_pool_is_not_sold_online(client, db, clock, world):
    from guahao.scheduling.models import Slot

    await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                        doctor_id=world["doctor"], day=DAY + dt.timedelta(days=2), onsite=2)
    async with db.read() as s:
        onsite = await s.scalar(select(Slot.id).where(Slot.pool == "onsite"))
    r = await hold(client, world["token"], onsite, world["patient"])
    assert r.json()["code"] == "slot_not_bookable"


async def test_not_yet_released_says_when(client, db, clock, world):
    release = clock.now() + dt.timedelta(hours=2)
    _, slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                   doctor_id=world["doctor"], day=DAY + dt.timedelta(days=3), release_at=release)
    r = await hold(client, world["token"], slots[0], world["patient"])
    body = r.json()
    assert r.status_code == 409 and body["code"] == "not_yet_released"
    assert body["release_at"] == "2026-11-19T12:00:00+08:00" and "12:00" in body["detail"]  # 04:00 UTC, local
    r = await hold(client, world["token"], slots[0], world["patient"], **{"Accept-Language": "en"})
    assert r.json()["detail"].startswith("Booking for this slot opens at")


async def test_booking_closes_at_period_start(client, db, clock, world):
    clock.set(dt.datetime(2026, 11, 21, 0, 0, tzinfo=dt.UTC))  # 08:00 Shanghai on the visit day
    r = await hold(client, world["token"], world["slot"], world["patient"])
    assert r.json()["code"] == "booking_closed"
    clock.set(dt.datetime(2026, 11, 20, 23, 59, 59, tzinfo=dt.UTC))
    r = await hold(client, world["token"], world["slot"], world["patient"])
    assert r.status_code == 201


@pytest.mark.parametrize("status,code", [("suspended", "schedule_suspended"), ("draft", "schedule_not_published")])
async def test_schedule_must_be_published(client, db, clock, world, status, code):
    _, slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                   doctor_id=world["doctor"], day=DAY + dt.timedelta(days=4), status=status)
    r = await hold(client, world["token"], slots[0], world["patient"])
    assert r.json()["code"] == code


async def test_unverified_patient_is_refused(client, db, clock, world):
    p = await make_patient(db, clock.now(), world["account"], verified=False)
    r = await hold(client, world["token"], world["slot"], p)
    assert r.json()["code"] == "patient_not_verified"


async def test_department_age_and_sex_limits(client, db, clock, world):
    peds = await make_department(db, world["hospital"], name="儿科", max_age=14)
    gyn = await make_department(db, world["hospital"], name="妇科", allowed_sex="F")
    _, peds_slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=peds,
                                        doctor_id=None, day=DAY)
    _, gyn_slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=gyn,
                                       doctor_id=None, day=DAY)
    r = await hold(client, world["token"], peds_slots[0], world["patient"])
    assert r.json()["code"] == "department_restriction" and "0-14" in r.json()["detail"]
    r = await hold(client, world["token"], gyn_slots[0], world["patient"])
    assert r.json()["code"] == "department_restriction"
    child = await make_patient(db, clock.now(), world["account"], birth=dt.date(2016, 3, 1), sex="F", name="王小花")
    assert (await hold(client, world["token"], peds_slots[0], child)).status_code == 201
    assert (await hold(client, world["token"], gyn_slots[0], child)).status_code == 201


async def test_record_requirement_refuses_without_a_record(client, db, clock, world):
    hid = await make_hospital(db, clock.now(), name="建档医院", record_requirement="existing_record_required")
    dep = await make_department(db, hid)
    _, slots = await make_schedule(db, clock.now(), hospital_id=hid, department_id=dep, doctor_id=None, day=DAY)
    r = await hold(client, world["token"], slots[0], world["patient"])
    assert r.json()["code"] == "record_required"


async def test_one_per_department_per_day_and_max_live(client, db, clock, world):
    assert (await hold(client, world["token"], world["slot"], world["patient"])).status_code == 201
    doc2 = await make_doctor(db, world["hospital"], world["department"], name="李娜")
    _, slots2 = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                    doctor_id=doc2, day=DAY)
    r = await hold(client, world["token"], slots2[0], world["patient"])
    assert r.json()["code"] == "duplicate_booking"
    for i in (1, 2):
        _, s = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                   doctor_id=doc2, day=DAY + dt.timedelta(days=i))
        assert (await hold(client, world["token"], s[0], world["patient"])).status_code == 201
    _, s = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                               doctor_id=doc2, day=DAY + dt.timedelta(days=3))
    r = await hold(client, world["token"], s[0], world["patient"])
    assert r.json()["code"] == "too_many_bookings" and "3" in r.json()["detail"]


async def test_sold_out_after_capacity(client, db, clock, world):
    codes = []
    for _ in range(4):
        acc, tok = await make_account(db, clock.now())
        p = await make_patient(db, clock.now(), acc)
        codes.append((await hold(client, tok, world["slot"], p)).json().get("code", "ok"))
    assert codes == ["ok", "ok", "ok", "slot_sold_out"]


async def test_creation_writes_an_event_row(client, db, world):
    r = await hold(client, world["token"], world["slot"], world["patient"])
    async with db.read() as s:
        events = list(await s.scalars(select(BookingEvent).where(BookingEvent.booking_id == r.json()["id"])))
    assert [(e.from_state, e.to_state, e.actor_type) for e in events] == [(None, "held", "account")]
