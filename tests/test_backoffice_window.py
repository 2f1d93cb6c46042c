"""The front desk: find a booking by code, ID number or phone (through the lookup hashes),
an audited reveal, check-in with identity confirmation, and voiding one booking with refund
and notice (issue 10)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from guahao.booking import actions
from guahao.booking.models import Booking
from guahao.core.audit import AuditEntry
from guahao.outbox.models import OutboxMessage
from guahao.patients import lookup as patient_lookup
from guahao.patients import service as patients_service
from guahao.patients.models import Patient
from guahao.scheduling.models import SlotPosition
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital, make_staff
from tests.conftest import remember_sensitive

TODAY = dt.date(2026, 11, 19)  # the conftest clock: 10:00 in Shanghai


async def _world(db, clock, *, fee: int = 1500):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    schedule_id, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=TODAY,
                                             capacity=4, registration_fee=fee, consultation_fee=0,
                                             release_at=now - dt.timedelta(days=3))
    account_id, _ = await make_account(db, now)
    id_number = make_id_number()
    patient_id = await make_patient(db, now, account_id, id_number=id_number, name="钱多多")
    booked_at = now - dt.timedelta(days=1)  # booking closes when the period starts: booked yesterday
    async with db.begin() as s:
        booking = await actions.do_hold(s, account_id=account_id, patient_id=patient_id, slot_id=slots[0],
                                        now=booked_at)
    if booking.state == "held":
        async with db.begin() as s:
            await actions.do_confirm(s, booking.id, now=booked_at + dt.timedelta(minutes=1))
    _, desk = await make_staff(db, now, role="front_desk", hospital_id=hid)
    return {"hid": hid, "schedule": schedule_id, "booking": booking.id, "code": booking.booking_code,
            "patient": patient_id, "id_number": id_number, "desk": desk, "account": account_id, "now": now}


async def test_desk_finds_a_booking_by_code_id_number_and_phone(client, db, clock):
    w = await _world(db, clock)
    phone = "+8613912345678"
    async with db.begin() as s:  # the builder writes rows directly; give the patient a phone hash
        await s.execute(update(Patient).where(Patient.id == w["patient"])
                        .values(phone_hash=patients_service.phone_hash(phone)))
    url = f"/api/v1/staff/hospitals/{w['hid']}/window/search"
    for body in ({"code": w["code"]}, {"id_number": w["id_number"]}, {"id_number": w["id_number"].lower()},
                 {"phone": "13912345678"}):
        r = await client.post(url, json=body, headers=auth(w["desk"]))
        assert r.status_code == 200, (body, r.text)
        assert [b["id"] for b in r.json()] == [w["booking"]], body
        assert w["id_number"] not in r.text and "钱多多" not in r.text  # masked
    for body in ({"id_number": make_id_number()}, {"phone": "13900000000"}, {"code": "00000000"}):
        r = await client.post(url, json=body, headers=auth(w["desk"]))
        assert r.status_code == 200 and r.json() == [], body
    r = await client.post(url, json={"code": w["code"], "phone": "13912345678"}, headers=auth(w["desk"]))
    assert r.status_code == 422


async def test_a_new_patient_gets_a_phone_lookup_hash(client, db, clock):
    now = clock.now()
    _, token = await make_account(db, now)
    r = await client.post("/api/v1/me/patients", headers=auth(token), json={
        "relationship": "self", "name": "李四", "id_number": make_id_number(), "phone": "13811112222"})
    assert r.status_code == 201, r.text
    async with db.read() as s:
        assert await patient_lookup.patient_ids_by_phone(s, "138 1111 2222") == [r.json()["id"]]
        stored = await s.scalar(select(Patient.phone_hash).where(Patient.id == r.json()["id"]))
    assert stored == patients_service.phone_hash("+8613811112222")


async def test_reveal_shows_the_full_identity_once_and_is_audited(client, db, clock):
    w = await _world(db, clock)
    r = await client.post(f"/api/v1/staff/bookings/{w['booking']}/reveal", json={}, headers=auth(w["desk"]))
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "钱多多" and r.json()["id_number"] == w["id_number"]
    assert r.headers["cache-control"] == "no-store"
    async with db.read() as s:
        entries = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "booking.reveal")))
    assert [(e.object_id, e.hospital_id) for e in entries] == [(str(w["booking"]), w["hid"])]
    assert entries[0].staff_id is not None and w["id_number"] not in entries[0].detail


async def test_reveal_and_void_are_refused_to_a_scheduler(client, db, clock):
    w = await _world(db, clock)
    _, scheduler = await make_staff(db, clock.now(), role="scheduler", hospital_id=w["hid"])
    for path, body in (("reveal", {}), ("void", {"reason": "x"}), ("window-check-in", {"id_number": w["id_number"]})):
        r = await client.post(f"/api/v1/staff/bookings/{w['booking']}/{path}", json=body, headers=auth(scheduler))
        assert r.status_code == 403, (path, r.text)


async def test_check_in_needs_the_patients_own_id_number(client, db, clock):
    w = await _world(db, clock)
    url = f"/api/v1/staff/bookings/{w['booking']}/window-check-in"
    r = await client.post(url, json={"id_number": make_id_number()}, headers=auth(w["desk"]))
    assert r.status_code == 409 and r.json()["code"] == "identity_mismatch"
    async with db.read() as s:
        assert await s.scalar(select(Booking.state).where(Booking.id == w["booking"])) == "confirmed"
    r = await client.post(url, json={"id_number": w["id_number"]}, headers=auth(w["desk"]))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "checked_in"


async def test_void_on_the_visit_day_refunds_notifies_frees_the_seat_and_is_no_strike(client, db, clock):
    w = await _world(db, clock)
    r = await client.post(f"/api/v1/staff/bookings/{w['booking']}/void", json={"reason": "患者到窗口要求退号"},
                          headers=auth(w["desk"]))
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled"
    async with db.read() as s:
        booking = await s.get(Booking, w["booking"])
        topics = set(await s.scalars(select(OutboxMessage.topic).where(
            OutboxMessage.dedupe_key.like(f"%:{w['booking']}"))))
        seat = await s.scalar(select(SlotPosition.id).where(SlotPosition.booking_id == w["booking"]))
        voids = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "booking.void")))
    assert booking.strike_at is None
    assert {"notify.booking_cancelled", "payment.refund"} <= topics
    assert seat is None
    assert len(voids) == 1 and "患者到窗口要求退号" in voids[0].detail
    again = await client.post(f"/api/v1/staff/bookings/{w['booking']}/void", json={"reason": "again"},
                              headers=auth(w["desk"]))
    assert again.status_code == 409 and again.json()["code"] == "invalid_state"


async def test_void_of_a_free_booking_sends_no_refund(client, db, clock):
    w = await _world(db, clock, fee=0)
    r = await client.post(f"/api/v1/staff/bookings/{w['booking']}/void", json={"reason": "重复挂号"},
                          headers=auth(w["desk"]))
    assert r.status_code == 200, r.text
    async with db.read() as s:
        topics = set(await s.scalars(select(OutboxMessage.topic).where(
            OutboxMessage.dedupe_key.like(f"%:{w['booking']}"))))
    assert "notify.booking_cancelled" in topics and "payment.refund" not in topics


async def test_desk_of_another_hospital_finds_nothing_and_reaches_nothing(client, db, clock):
    w = await _world(db, clock)
    other = await make_hospital(db, clock.now(), name="乙医院")
    _, stranger = await make_staff(db, clock.now(), role="front_desk", hospital_id=other)
    r = await client.post(f"/api/v1/staff/hospitals/{w['hid']}/window/search", json={"code": w["code"]},
                          headers=auth(stranger))
    assert r.status_code == 404
    r = await client.post(f"/api/v1/staff/hospitals/{other}/window/search", json={"id_number": w["id_number"]},
                          headers=auth(stranger))
    assert r.status_code == 200 and r.json() == []
    for path, body in (("reveal", {}), ("void", {"reason": "x"})):
        r = await client.post(f"/api/v1/staff/bookings/{w['booking']}/{path}", json=body, headers=auth(stranger))
        assert r.status_code == 404, path


async def test_walk_ins_take_the_onsite_pool_checked_in_with_their_numbers(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    schedule, _ = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=TODAY,
                                      capacity=4, onsite=2)
    _, desk = await make_staff(db, now, role="front_desk", hospital_id=hid)
    url = f"/api/v1/staff/schedules/{schedule}/walk-ins"
    first_id = make_id_number()
    remember_sensitive(first_id, "13700001111", "孙悟空")  # the session end checks the log for them
    r = await client.post(url, json={"name": "孙悟空", "id_number": first_id, "phone": "13700001111"},
                          headers=auth(desk))
    assert r.status_code == 201, r.text
    walk_in = r.json()
    assert (walk_in["state"], walk_in["visit_no"]) == ("checked_in", 5)  # after the 4 platform seats
    assert "孙悟空" not in r.text and first_id not in r.text
    twice = await client.post(url, json={"name": "孙悟空", "id_number": first_id, "phone": "13700001111"},
                              headers=auth(desk))
    assert twice.status_code == 409 and twice.json()["code"] == "duplicate_booking"
    second = await client.post(url, json={"name": "猪八戒", "id_number": make_id_number(), "phone": "13700002222"},
                               headers=auth(desk))
    assert second.status_code == 201 and second.json()["visit_no"] == 6
    full = await client.post(url, json={"name": "沙和尚", "id_number": make_id_number(), "phone": "13700003333"},
                             headers=auth(desk))
    assert full.status_code == 409 and full.json()["code"] == "onsite_full"
    found = await client.post(f"/api/v1/staff/hospitals/{hid}/window/search", json={"phone": "13700001111"},
                              headers=auth(desk))
    assert [b["id"] for b in found.json()] == [walk_in["id"]]
    roster = await client.get(f"/api/v1/staff/hospitals/{hid}/roster", params={"date": TODAY.isoformat()},
                              headers=auth(desk))
    assert [e["visit_no"] for e in roster.json()] == [5, 6]
    async with db.read() as s:
        booking = await s.get(Booking, walk_in["id"])
        audited = await s.scalar(select(AuditEntry.id).where(AuditEntry.action == "booking.walk_in"))
    assert booking.account_id is None and audited is not None


async def test_walk_ins_only_on_the_day_and_only_where_the_hospital_runs_its_pools(client, db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    later, _ = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None,
                                   day=TODAY + dt.timedelta(days=1), onsite=2)
    _, desk = await make_staff(db, now, role="front_desk", hospital_id=hid)
    body = {"name": "孙悟空", "id_number": make_id_number(), "phone": "13700001111"}
    r = await client.post(f"/api/v1/staff/schedules/{later}/walk-ins", json=body, headers=auth(desk))
    assert r.status_code == 409 and r.json()["code"] == "walk_in_closed"
    synced = await make_hospital(db, now, name="接入HIS的医院")
    async with db.begin() as s:
        from guahao.catalog.models import Hospital

        await s.execute(update(Hospital).where(Hospital.id == synced).values(his_mode="synced"))
    sdep = await make_department(db, synced)
    today, _ = await make_schedule(db, now, hospital_id=synced, department_id=sdep, doctor_id=None, day=TODAY,
                                   onsite=2)
    _, synced_desk = await make_staff(db, now, role="front_desk", hospital_id=synced)
    r = await client.post(f"/api/v1/staff/schedules/{today}/walk-ins", json=body, headers=auth(synced_desk))
    assert r.status_code == 409 and r.json()["code"] == "walk_in_not_local"
    _, scheduler = await make_staff(db, now, role="scheduler", hospital_id=hid)
    r = await client.post(f"/api/v1/staff/schedules/{later}/walk-ins", json=body, headers=auth(scheduler))
    assert r.status_code == 403


async def test_the_keys_pass_fills_the_phone_hash_of_older_patient_rows(client, db, clock):
    from guahao.keys.rotation import reencrypt

    w = await _world(db, clock)  # the builder writes patients without a phone hash, as older rows are
    async with db.read() as s:
        patient = await s.get(Patient, w["patient"])
        assert patient.phone_hash is None
        phone = patient.phone
    url = f"/api/v1/staff/hospitals/{w['hid']}/window/search"
    assert (await client.post(url, json={"phone": phone}, headers=auth(w["desk"]))).json() == []
    report = await reencrypt(db)
    assert report.hashes_rewritten >= 1
    found = await client.post(url, json={"phone": phone}, headers=auth(w["desk"]))
    assert [b["id"] for b in found.json()] == [w["booking"]]
    assert (await reencrypt(db)).hashes_rewritten == 0
