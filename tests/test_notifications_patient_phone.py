"""Booking SMS reach the 就诊人 too: the account holder gets every message, and the patient's
own phone a copy when the hospital rule `sms_to_patient_phone` is on (the default) and the
number is another one; one message per recipient however often the job runs."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from guahao.accounts.sms import RecordingSms
from guahao.booking import actions
from guahao.catalog.models import HospitalRules
from guahao.notifications import jobs as notify_jobs
from guahao.notifications.models import SentMessage
from guahao.outbox.registry import JobContext
from guahao.patients.models import Patient
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_department, make_doctor, make_hospital
from tests.test_notifications import TOMORROW, new_account, only_payload, run_often


@pytest.fixture
def sms() -> RecordingSms:
    return RecordingSms()


@pytest.fixture
def ctx(db, clock, settings, sms) -> JobContext:
    return JobContext(db=db, clock=clock, settings=settings, providers={"sms": sms})


async def _world(db, clock, **rules) -> dict:
    now = clock.now()
    hid = await make_hospital(db, now, name="北京协和医院", **rules)
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=TOMORROW,
                                   capacity=4, bands=4)
    account_id, phone = await new_account(db, now)
    patient_id = await make_patient(db, now, account_id)
    async with db.read() as s:
        patient_phone = await s.scalar(select(Patient.phone).where(Patient.id == patient_id))
    return {"hospital": hid, "slot": slots[0], "account": account_id, "phone": phone, "patient": patient_id,
            "patient_phone": patient_phone}


async def _confirmed(db, clock, world) -> int:
    async with db.begin() as s:
        booking = await actions.do_hold(s, account_id=world["account"], patient_id=world["patient"],
                                        slot_id=world["slot"], now=clock.now())
    async with db.begin() as s:
        await actions.do_confirm(s, booking.id, now=clock.now())
    return booking.id


async def test_the_patients_own_phone_gets_the_confirmation_too_once(db, clock, ctx, sms):
    world = await _world(db, clock)
    assert world["patient_phone"] != world["phone"]
    bid = await _confirmed(db, clock, world)

    await run_often(notify_jobs.booking_confirmed, ctx, await only_payload(db, "notify.booking_confirmed"))

    assert sorted(m.phone for m in sms.sent) == sorted([world["phone"], world["patient_phone"]])
    assert sms.sent[0].params == sms.sent[1].params and {m.template for m in sms.sent} == {"booking_confirmed"}
    async with db.read() as s:
        keys = set(await s.scalars(select(SentMessage.dedupe_key).where(SentMessage.booking_id == bid)))
    assert keys == {f"booking_confirmed:{bid}", f"booking_confirmed:{bid}:patient"}


async def test_cancellation_reaches_the_patient_too(db, clock, ctx, sms):
    world = await _world(db, clock)
    bid = await _confirmed(db, clock, world)
    async with db.begin() as s:
        await actions.do_cancel(s, account_id=world["account"], booking_id=bid, now=clock.now())

    await notify_jobs.booking_cancelled(ctx, await only_payload(db, "notify.booking_cancelled"))

    assert sorted(m.phone for m in sms.sent) == sorted([world["phone"], world["patient_phone"]])


async def test_the_same_number_gets_one_message(db, clock, ctx, sms):
    world = await _world(db, clock)
    async with db.begin() as s:
        (await s.get_one(Patient, world["patient"])).phone = world["phone"]  # the model encrypts for its row
    await _confirmed(db, clock, world)

    await run_often(notify_jobs.booking_confirmed, ctx, await only_payload(db, "notify.booking_confirmed"))

    assert [m.phone for m in sms.sent] == [world["phone"]]


async def test_a_hospital_may_turn_the_patient_copy_off(db, clock, ctx, sms):
    world = await _world(db, clock, sms_to_patient_phone=False)
    await _confirmed(db, clock, world)

    await notify_jobs.booking_confirmed(ctx, await only_payload(db, "notify.booking_confirmed"))

    assert [m.phone for m in sms.sent] == [world["phone"]]


async def test_only_the_payer_is_asked_to_pay(db, clock, ctx, sms):
    world = await _world(db, clock)
    async with db.begin() as s:
        booking = await actions.do_hold(s, account_id=world["account"], patient_id=world["patient"],
                                        slot_id=world["slot"], now=clock.now())
    clock.advance(minutes=13)

    await notify_jobs.hold_expiring(ctx, {"booking_id": booking.id})

    assert [(m.phone, m.template) for m in sms.sent] == [(world["phone"], "hold_expiring")]


async def test_the_rule_is_part_of_the_staff_rules(client, db, clock):
    from tests.builders import auth, make_staff

    world = await _world(db, clock)
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world["hospital"])
    url = f"/api/v1/staff/hospitals/{world['hospital']}/rules"
    rules = (await client.get(url, headers=auth(admin))).json()
    assert rules["sms_to_patient_phone"] is True
    rules.pop("hospital_id"), rules.pop("updated_at")
    rules["sms_to_patient_phone"] = False
    assert (await client.put(url, json=rules, headers=auth(admin))).json()["sms_to_patient_phone"] is False
    async with db.read() as s:
        row = await s.get(HospitalRules, world["hospital"])
    assert row.sms_to_patient_phone is False
