"""The scheduler's and the admin's back-office actions (issue 10): 停诊 for a doctor's leave
with a preview, resume, capacity changes on booked sessions, clinic hours per hospital, and
the rules in patients' words."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from guahao.booking import actions
from guahao.booking.models import Booking
from guahao.catalog import rules as hospital_rules
from guahao.catalog.schemas import HospitalRulesUpdate
from guahao.core.audit import AuditEntry
from guahao.scheduling.models import Schedule, SlotPosition
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital, make_staff

DAY = dt.date(2026, 11, 21)  # two days after the conftest clock


async def _world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    other_doc = await make_doctor(db, hid, dep, name="李雷")
    account_id, _ = await make_account(db, now)
    _, scheduler = await make_staff(db, now, role="scheduler", hospital_id=hid)
    _, admin = await make_staff(db, now, role="hospital_admin", hospital_id=hid)
    _, desk = await make_staff(db, now, role="front_desk", hospital_id=hid)
    return {"hid": hid, "dep": dep, "doc": doc, "other_doc": other_doc, "account": account_id, "now": now,
            "scheduler": auth(scheduler), "admin": auth(admin), "desk": auth(desk)}


async def _session(db, w, day, doctor=None, capacity=4):
    return await make_schedule(db, w["now"], hospital_id=w["hid"], department_id=w["dep"],
                               doctor_id=doctor or w["doc"], day=day, capacity=capacity, registration_fee=1500,
                               consultation_fee=0)


async def _book(db, w, slot, *, pay: bool):
    patient = await make_patient(db, w["now"], w["account"])
    async with db.begin() as s:
        booking = await actions.do_hold(s, account_id=w["account"], patient_id=patient, slot_id=slot, now=w["now"])
    if pay:
        async with db.begin() as s:
            await actions.do_confirm(s, booking.id, now=w["now"])
    return booking.id


def _leave(w, first, last, **extra):
    return {"doctor_id": w["doc"], "from_date": first.isoformat(), "to_date": last.isoformat(), **extra}


async def test_leave_preview_shows_the_impact_and_the_suspension_revokes_exactly_that(client, db, clock):
    w = await _world(db, clock)
    first, first_slots = await _session(db, w, DAY)
    second, second_slots = await _session(db, w, DAY + dt.timedelta(days=1))
    later, _ = await _session(db, w, DAY + dt.timedelta(days=3))
    colleague, _ = await _session(db, w, DAY, doctor=w["other_doc"])
    paid = await _book(db, w, first_slots[0], pay=True)
    held = await _book(db, w, second_slots[0], pay=False)
    url = f"/api/v1/staff/hospitals/{w['hid']}/leave"
    body = _leave(w, DAY, DAY + dt.timedelta(days=1))

    preview = await client.post(f"{url}/preview", json=body, headers=w["scheduler"])
    assert preview.status_code == 200, preview.text
    p = preview.json()
    assert [s["schedule_id"] for s in p["sessions"]] == [first, second]
    assert (p["bookings"], p["refunds"], p["refund_total"]) == (2, 1, 1500)
    assert p["notices"] == {"notify.booking_revoked": 2, "payment.refund": 1}
    async with db.read() as s:  # a preview changes nothing
        assert set(await s.scalars(select(Schedule.status))) == {"published"}

    done = await client.post(url, json={**body, "reason": "医生休假"}, headers=w["scheduler"])
    assert done.status_code == 200, done.text
    assert done.json()["suspended"] == [first, second]
    assert sorted(b for ids in done.json()["revoked"].values() for b in ids) == sorted([paid, held])
    async with db.read() as s:
        status = dict((await s.execute(select(Schedule.id, Schedule.status))).all())
        states = set(await s.scalars(select(Booking.state)))
        audited = list(await s.scalars(select(AuditEntry.object_id).where(AuditEntry.action == "schedule.suspend")))
    assert (status[first], status[second], status[later], status[colleague]) == (
        "suspended", "suspended", "published", "published")
    assert states == {"revoked"}
    assert sorted(audited) == sorted([str(first), str(second)])

    resumed = await client.post(f"/api/v1/staff/schedules/{first}/resume", headers=w["scheduler"])
    assert resumed.status_code == 200 and resumed.json()["revoked"] == 1, resumed.text
    async with db.read() as s:  # lifted: the revoked booking stays revoked (refunded and told)
        assert await s.scalar(select(Booking.state).where(Booking.id == paid)) == "revoked"
        assert await s.scalar(select(Schedule.status).where(Schedule.id == first)) == "published"


async def test_a_suspension_that_revoked_nothing_can_be_resumed(client, db, clock):
    w = await _world(db, clock)
    schedule, slots = await _session(db, w, DAY)
    r = await client.post(f"/api/v1/staff/hospitals/{w['hid']}/leave", json=_leave(w, DAY, DAY, reason="会议"),
                          headers=w["scheduler"])
    assert r.status_code == 200 and r.json()["revoked"] == {str(schedule): []}
    resumed = await client.post(f"/api/v1/staff/schedules/{schedule}/resume", headers=w["scheduler"])
    assert resumed.status_code == 200, resumed.text
    async with db.read() as s:
        assert await s.scalar(select(Schedule.status).where(Schedule.id == schedule)) == "published"
        assert await s.scalar(select(AuditEntry.id).where(AuditEntry.action == "schedule.resume")) is not None
    assert (await _book(db, w, slots[0], pay=False)) > 0  # bookable again
    again = await client.post(f"/api/v1/staff/schedules/{schedule}/resume", headers=w["scheduler"])
    assert again.status_code == 409 and again.json()["code"] == "schedule_not_suspended"


async def test_leave_is_refused_to_the_front_desk_and_checks_its_range(client, db, clock):
    w = await _world(db, clock)
    url = f"/api/v1/staff/hospitals/{w['hid']}/leave"
    r = await client.post(url, json=_leave(w, DAY, DAY, reason="x"), headers=w["desk"])
    assert r.status_code == 403
    backwards = await client.post(f"{url}/preview", json=_leave(w, DAY, DAY - dt.timedelta(days=1)),
                                  headers=w["scheduler"])
    assert backwards.status_code == 422 and backwards.json()["code"] == "suspension_range_invalid"
    other = await make_hospital(db, w["now"], name="乙医院")
    foreign_doctor = await make_doctor(db, other, await make_department(db, other))
    r = await client.post(f"{url}/preview", json={**_leave(w, DAY, DAY), "doctor_id": foreign_doctor},
                          headers=w["scheduler"])
    assert r.status_code == 404


async def test_capacity_of_a_booked_session_changes_seat_by_seat_never_below_sold(client, db, clock):
    w = await _world(db, clock)
    schedule, slots = await _session(db, w, DAY, capacity=4)
    first = await _book(db, w, slots[0], pay=True)
    second = await _book(db, w, slots[0], pay=False)
    url = f"/api/v1/staff/schedules/{schedule}"
    below = await client.patch(url, json={"platform_capacity": 1}, headers=w["scheduler"])
    assert below.status_code == 409 and below.json()["code"] == "capacity_below_sold"
    assert below.json()["taken"] == 2
    cut = await client.patch(url, json={"platform_capacity": 2}, headers=w["scheduler"])
    assert cut.status_code == 200, cut.text
    assert cut.json()["platform_capacity"] == 2
    rebanded = await client.patch(url, json={"bands": [["08:00", "10:00"]]}, headers=w["scheduler"])
    assert rebanded.status_code == 409
    raised = await client.patch(url, json={"platform_capacity": 5}, headers=w["scheduler"])
    assert raised.status_code == 200 and raised.json()["platform_capacity"] == 5
    async with db.read() as s:
        numbers = sorted(await s.scalars(select(SlotPosition.visit_no).where(SlotPosition.schedule_id == schedule)))
        kept = dict((await s.execute(select(Booking.id, Booking.visit_no).where(Booking.id.in_([first, second])))).all())
    assert numbers == [1, 2, 3, 4, 5]
    assert kept == {first: 1, second: 2}  # nobody's number moved
    third = await _book(db, w, slots[0], pay=False)
    async with db.read() as s:
        assert await s.scalar(select(Booking.visit_no).where(Booking.id == third)) == 3


async def test_clinic_hours_are_per_hospital_and_used_by_generation(client, db, clock):
    w = await _world(db, clock)
    url = f"/api/v1/staff/hospitals/{w['hid']}/clinic-hours"
    default = await client.get(url, headers=w["desk"])
    assert default.json()["morning"] == {"opens": "08:00", "closes": "12:00"}
    hours = {"morning": {"opens": "07:30", "closes": "11:30"}, "afternoon": {"opens": "13:00", "closes": "17:00"},
             "evening": {"opens": "18:00", "closes": "20:00"}}
    assert (await client.put(url, json=hours, headers=w["scheduler"])).status_code == 403
    overlapping = {**hours, "afternoon": {"opens": "11:00", "closes": "17:00"}}
    bad = await client.put(url, json=overlapping, headers=w["admin"])
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_clinic_hours"
    r = await client.put(url, json=hours, headers=w["admin"])
    assert r.status_code == 200 and r.json() == hours
    other = await make_hospital(db, w["now"], name="乙医院")
    async with db.read() as s:
        assert (await hospital_rules.get_rules(s, other)).period_windows["morning"] == (dt.time(8), dt.time(12))
        assert await s.scalar(select(AuditEntry.id).where(AuditEntry.action == "clinic_hours.update")) is not None

    template = await client.post(f"/api/v1/staff/hospitals/{w['hid']}/schedule-templates", headers=w["scheduler"],
                                 json={"doctor_id": w["doc"], "weekday": DAY.weekday(), "period": "morning",
                                       "platform_capacity": 6, "bands": [["07:30", "09:30"], ["09:30", "11:30"]]})
    assert template.status_code == 201, template.text  # 07:30 is inside this hospital's morning
    fees = [{"registration_level": "expert", "title": "chief", "registration_fee": 500, "consultation_fee": 0}]
    assert (await client.put(f"/api/v1/staff/hospitals/{w['hid']}/fees", json=fees, headers=w["admin"])).status_code == 200
    generated = await client.post(f"/api/v1/staff/hospitals/{w['hid']}/schedules/generate", headers=w["scheduler"],
                                  json={"from_date": DAY.isoformat(), "to_date": DAY.isoformat()})
    assert generated.status_code == 200 and generated.json()["created"] == 1, generated.text
    detail = await client.get(f"/api/v1/staff/schedules/{generated.json()['schedule_ids'][0]}", headers=w["scheduler"])
    assert detail.json()["starts_at"] == f"{DAY.isoformat()}T07:30:00+08:00"
    assert detail.json()["ends_at"] == f"{DAY.isoformat()}T11:30:00+08:00"


async def test_rules_preview_says_what_patients_will_read(client, db, clock):
    w = await _world(db, clock)
    url = f"/api/v1/staff/hospitals/{w['hid']}/rules/preview"
    current = await client.post(url, headers=w["admin"])
    assert current.status_code == 200, current.text
    text = current.json()
    assert any("15分钟" in line for line in text["zh-CN"]) and any("15 minutes" in line for line in text["en"])
    assert any("08:00-12:00" in line for line in text["zh-CN"])
    proposed = HospitalRulesUpdate(**{**hospital_rules.default_values(), "hold_minutes": 20,
                                      "record_requirement": "create_at_hospital"}).model_dump(mode="json")
    edited = (await client.post(url, json=proposed, headers=w["admin"])).json()
    assert any("20分钟" in line for line in edited["zh-CN"]) and any("20 minutes" in line for line in edited["en"])
    assert any("建档" in line for line in edited["zh-CN"])
    async with db.read() as s:  # a preview saves nothing
        assert (await hospital_rules.get_rules(s, w["hid"])).hold_minutes == 15


async def test_a_capacity_cut_racing_a_hold_never_strands_a_booking(client, db, clock):
    """The cut holds the schedule row exclusively; a hold takes it shared. Whichever goes
    first, the other sees its result: a cut to what was sold refuses once the hold got in,
    and a hold after the cut finds the slot full. Every live booking keeps its seat."""
    import asyncio

    from guahao.booking import errors

    w = await _world(db, clock)
    for round_ in range(4):
        schedule, slots = await _session(db, w, DAY + dt.timedelta(days=round_), capacity=3)
        await _book(db, w, slots[0], pay=True)
        patient = await make_patient(db, w["now"], w["account"])

        async def hold(slot=slots[0], patient=patient):
            try:
                async with db.begin() as s:
                    return (await actions.do_hold(s, account_id=w["account"], patient_id=patient, slot_id=slot,
                                                  now=w["now"])).id
            except errors.SlotSoldOut:
                return None

        cut, held = await asyncio.gather(
            client.patch(f"/api/v1/staff/schedules/{schedule}", json={"platform_capacity": 1},
                         headers=w["scheduler"]),
            hold())
        if cut.status_code == 200:
            assert held is None
        else:
            assert cut.json()["code"] == "capacity_below_sold" and held is not None
        async with db.read() as s:
            live = set(await s.scalars(select(Booking.id).where(Booking.schedule_id == schedule,
                                                                Booking.state.in_(("held", "confirmed")))))
            seated = set(await s.scalars(select(SlotPosition.booking_id).where(
                SlotPosition.schedule_id == schedule, SlotPosition.booking_id.is_not(None))))
        assert live == seated
