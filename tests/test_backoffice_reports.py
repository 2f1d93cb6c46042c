"""Reports (bookings per day / department / doctor / state, no-show rate, cancellations,
money, CSV export) and the restriction list with masked names and IDs (issue 10)."""
from __future__ import annotations

import csv
import datetime as dt
import io

from sqlalchemy import select, update

from guahao.booking import actions, window_actions
from guahao.booking.models import Booking, Restriction
from guahao.core.audit import AuditEntry
from guahao.patients.models import Patient
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital, make_staff

DAY = dt.date(2026, 11, 21)


async def _world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep, name="张伟")
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=8)
    account_id, _ = await make_account(db, now)
    _, admin = await make_staff(db, now, role="hospital_admin", hospital_id=hid)
    staff_id, _ = await make_staff(db, now, role="front_desk", hospital_id=hid)
    ids = []
    for i in range(5):
        patient = await make_patient(db, now, account_id, name="钱多多" if i == 0 else "王小明")
        async with db.begin() as s:
            booking = await actions.do_hold(s, account_id=account_id, patient_id=patient, slot_id=slots[0], now=now)
        if i != 1:
            async with db.begin() as s:
                await actions.do_confirm(s, booking.id, now=now)
        ids.append(booking.id)
    async with db.begin() as s:
        await actions.do_cancel(s, account_id=account_id, booking_id=ids[1], now=now)
        await window_actions.do_void(s, hospital_id=hid, booking_id=ids[2], reason="重复挂号", staff_id=staff_id,
                                     now=now)
        await s.execute(update(Booking).where(Booking.id == ids[3]).values(state="no_show"))
        await s.execute(update(Booking).where(Booking.id == ids[4]).values(state="completed"))
    return {"hid": hid, "dep": dep, "doc": doc, "admin": auth(admin), "ids": ids, "now": now}


def _url(w, path):
    return f"/api/v1/staff/hospitals/{w['hid']}/reports/{path}"


async def test_summary_counts_states_no_shows_and_who_cancelled(client, db, clock):
    w = await _world(db, clock)
    r = await client.get(_url(w, "summary"), params={"from": DAY.isoformat(), "to": DAY.isoformat()},
                         headers=w["admin"])
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["bookings"] == 5
    assert {k: v for k, v in s["states"].items() if v} == {"confirmed": 1, "cancelled": 2, "no_show": 1,
                                                            "completed": 1}
    assert s["no_show_rate"] == 0.5
    assert (s["cancelled_by_patient"], s["cancelled_by_hospital"], s["revoked"]) == (1, 1, 0)
    assert (s["paid"], s["refunded"], s["refund_pending"]) == (0, 0, 0)
    outside = await client.get(_url(w, "summary"), params={"from": (DAY + dt.timedelta(days=1)).isoformat(),
                                                           "to": (DAY + dt.timedelta(days=2)).isoformat()},
                               headers=w["admin"])
    assert outside.json()["bookings"] == 0 and outside.json()["no_show_rate"] is None


async def test_bookings_by_doctor_department_and_day_with_csv_export(client, db, clock):
    w = await _world(db, clock)
    params = {"from": DAY.isoformat(), "to": DAY.isoformat()}
    by_doctor = (await client.get(_url(w, "bookings"), params={**params, "group": "doctor"},
                                  headers=w["admin"])).json()
    assert [(row["key"], row["label"], row["total"]) for row in by_doctor["rows"]] == [(str(w["doc"]), "张伟", 5)]
    by_dep = (await client.get(_url(w, "bookings"), params={**params, "group": "department"},
                               headers=w["admin"])).json()
    assert [(row["label"], row["states"]["cancelled"]) for row in by_dep["rows"]] == [("心内科", 2)]
    r = await client.get(_url(w, "bookings"), params={**params, "group": "day", "format": "csv"}, headers=w["admin"])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(r.text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["day", "label", "total"] and rows[1][:3] == [DAY.isoformat(), "", "5"]
    money = await client.get(_url(w, "money.csv"), params=params, headers=w["admin"])
    assert money.status_code == 200 and money.text.lstrip("\ufeff").startswith("date,paid,payments")
    async with db.read() as s:
        exports = list(await s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "report.export")))
    assert len(exports) == 2


async def test_reports_are_for_admins_of_the_hospital(client, db, clock):
    w = await _world(db, clock)
    _, scheduler = await make_staff(db, w["now"], role="scheduler", hospital_id=w["hid"])
    assert (await client.get(_url(w, "summary"), headers=auth(scheduler))).status_code == 403
    other = await make_hospital(db, w["now"], name="乙医院")
    _, stranger = await make_staff(db, w["now"], role="hospital_admin", hospital_id=other)
    for path in ("summary", "bookings", "money.csv"):
        assert (await client.get(_url(w, path), headers=auth(stranger))).status_code == 404, path


async def test_restriction_list_shows_masked_name_and_id(client, db, clock):
    w = await _world(db, clock)
    id_number = make_id_number()
    account_id, _ = await make_account(db, w["now"])
    patient = await make_patient(db, w["now"], account_id, id_number=id_number, name="赵钱孙")
    async with db.begin() as s:
        person = await s.scalar(select(Patient.person_id).where(Patient.id == patient))
        s.add(Restriction(person_id=person, hospital_id=w["hid"], starts_at=w["now"],
                          until=w["now"] + dt.timedelta(days=30), reason="3 no-shows", strikes=3))
    r = await client.get(f"/api/v1/staff/hospitals/{w['hid']}/restrictions", headers=w["admin"])
    assert r.status_code == 200, r.text
    [item] = r.json()
    assert item["person_name"] == "赵*" and item["person_id_number"][0] == id_number[0]
    assert "*" in item["person_id_number"] and id_number not in r.text and "赵钱孙" not in r.text
    lifted = await client.post(f"/api/v1/staff/restrictions/{item['id']}/lift", json={"reason": "核实后解除"},
                               headers=w["admin"])
    assert lifted.status_code == 200 and lifted.json()["person_name"] == "赵*"
    async with db.read() as s:
        assert await s.scalar(select(AuditEntry.id).where(AuditEntry.action == "restriction.lift")) is not None
