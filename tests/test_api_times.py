"""Every time the API answers with is the hospital's wall clock with its offset: a 13:30 visit
in Shanghai reads `...T13:30:00+08:00` in every view that shows it, never `05:30:00Z`."""
from __future__ import annotations

import datetime as dt
import re

import pytest
from sqlalchemy import select, update

from guahao.booking.models import Restriction
from guahao.core.clock import SHANGHAI
from guahao.core.localtime import localize
from guahao.patients.models import Patient
from guahao.payments.fake import InMemoryPayments
from guahao.scheduling.models import Schedule, Slot
from tests.builders import auth, make_staff
from tests.payments_support import DAY, make_world, new_patient, start_payment

ISO_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)?$")
VISIT = f"{DAY.isoformat()}T13:30:00+08:00"


def assert_all_local(body, where: str) -> int:
    """Every datetime string anywhere in `body` carries +08:00; returns how many were seen."""
    seen = 0
    if isinstance(body, dict):
        return sum(assert_all_local(v, f"{where}.{k}") for k, v in body.items())
    if isinstance(body, list):
        return sum(assert_all_local(v, f"{where}[]") for v in body)
    if isinstance(body, str) and ISO_DATETIME.match(body) and "T" in body:
        assert body.endswith("+08:00"), f"{where} = {body}"
        seen = 1
    return seen


@pytest.fixture
def fake(app, clock) -> InMemoryPayments:
    port = InMemoryPayments(clock=clock)
    app.state.providers["payments"] = port
    return port


async def _afternoon_world(db, clock) -> dict:
    """The payment tests' world, its one slot moved to 13:30-14:00 Shanghai time."""
    world = await make_world(db, clock)
    start = dt.datetime.combine(DAY, dt.time(13, 30), tzinfo=SHANGHAI)
    async with db.begin() as s:
        await s.execute(update(Schedule).where(Schedule.id == world["schedule"])
                        .values(period="afternoon", starts_at=start - dt.timedelta(minutes=30),
                                ends_at=start + dt.timedelta(hours=3)))
        await s.execute(update(Slot).where(Slot.schedule_id == world["schedule"])
                        .values(starts_at=start, ends_at=start + dt.timedelta(minutes=30)))
    return world


def test_localize_converts_nested_models_and_keeps_the_instant():
    from guahao.payments.schemas import PaymentRead, RefundRead

    utc = dt.datetime(2026, 11, 21, 5, 30, tzinfo=dt.UTC)
    refund = RefundRead(id=1, out_refund_no="r", amount=1, state="pending", reason="x", attempts=0,
                        created_at=utc, succeeded_at=None)
    payment = PaymentRead(id=1, booking_id=1, out_trade_no="t", amount=1, state="paid", pay_url=None,
                          provider="fake", provider_txn_id=None, paid_at=utc, settled_as=None, flagged_reason=None,
                          created_at=utc, refund=refund)
    local = localize([payment], SHANGHAI)[0]
    assert local.paid_at.isoformat() == "2026-11-21T13:30:00+08:00" and local.paid_at == utc
    assert local.refund.created_at.isoformat() == "2026-11-21T13:30:00+08:00"
    assert payment.paid_at.isoformat() == "2026-11-21T05:30:00+00:00"  # the input is left alone


async def test_a_1330_visit_reads_1330_plus_0800_in_every_view(client, db, clock, fake):
    world = await _afternoon_world(db, clock)
    hid = world["hospital"]
    account, token, patient = await new_patient(db, clock)
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hid)

    held = await client.post("/api/v1/bookings", json={"slot_id": world["slot"], "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": "times-1"})
    assert held.status_code == 201, held.text
    booking = held.json()
    assert booking["starts_at"] == VISIT
    assert assert_all_local(booking, "hold") >= 4
    booking_id = booking["id"]

    started = await start_payment(client, token, booking_id)
    assert assert_all_local(started.json(), "payment started") == 1
    no = started.json()["pay_url"].rsplit("/", 1)[1]
    headers, body = fake.pay(no)
    assert (await client.post("/api/v1/payments/notify/paysim", content=body, headers=headers)).status_code == 200

    patient_views = {
        "booking": f"/api/v1/bookings/{booking_id}",
        "bookings": "/api/v1/bookings",
        "events": f"/api/v1/bookings/{booking_id}/events",
        "payments": f"/api/v1/bookings/{booking_id}/payments",
        "cancel preview": f"/api/v1/bookings/{booking_id}/cancel-preview",
    }
    for name, url in patient_views.items():
        answer = await client.get(url, headers=auth(token))
        assert answer.status_code == 200, (name, answer.text)
        assert assert_all_local(answer.json(), name) >= 1, name
    assert (await client.get(f"/api/v1/bookings/{booking_id}", headers=auth(token))).json()["starts_at"] == VISIT
    assert (await client.get("/api/v1/bookings", headers=auth(token))).json()["items"][0]["starts_at"] == VISIT

    async with db.begin() as s:
        person_id = await s.scalar(select(Patient.person_id).where(Patient.id == patient))
        s.add(Restriction(person_id=person_id, hospital_id=hid, starts_at=clock.now(),
                          until=clock.now() + dt.timedelta(days=30), reason="test", strikes=3))
    rules = (await client.get(f"/api/v1/staff/hospitals/{hid}/rules", headers=auth(admin))).json()
    rules.pop("hospital_id"), rules.pop("updated_at")
    rules["hold_minutes"] = 20
    assert (await client.put(f"/api/v1/staff/hospitals/{hid}/rules", json=rules,
                             headers=auth(admin))).status_code == 200

    staff_views = {
        "roster": f"/api/v1/staff/hospitals/{hid}/roster?date={DAY}",
        "search": f"/api/v1/staff/hospitals/{hid}/bookings?date={DAY}",
        "money": f"/api/v1/staff/bookings/{booking_id}/payments",
        "schedules": f"/api/v1/staff/hospitals/{hid}/schedules?from={DAY}&to={DAY}",
        "schedule": f"/api/v1/staff/schedules/{world['schedule']}",
        "restrictions": f"/api/v1/staff/hospitals/{hid}/restrictions",
        "rules": f"/api/v1/staff/hospitals/{hid}/rules",
        "audit": f"/api/v1/staff/audit?hospital_id={hid}",
    }
    for name, url in staff_views.items():
        answer = await client.get(url, headers=auth(admin))
        assert answer.status_code == 200, (name, answer.text)
        assert assert_all_local(answer.json(), name) >= 1, name
    roster = (await client.get(staff_views["roster"], headers=auth(admin))).json()
    assert roster[0]["starts_at"] == VISIT
    detail = (await client.get(staff_views["schedule"], headers=auth(admin))).json()
    assert [s["starts_at"] for s in detail["slots"]] == [VISIT]

    availability = (await client.get(f"/api/v1/departments/{world['department']}/availability?from={DAY}&days=1")).json()
    assert assert_all_local(availability, "availability") >= 2
    assert availability["days"][0]["periods"][0]["schedules"][0]["slots"][0]["starts_at"] == VISIT


async def test_answers_about_no_hospital_use_the_platform_zone(client, db, clock):
    """Patients, staff users and the job queue belong to no hospital: China time, +08:00."""
    from guahao.outbox import service as outbox

    account, token, patient = await new_patient(db, clock)
    _, operator = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    async with db.begin() as s:
        await outbox.enqueue(s, topic="t.dead", dedupe_key="times-dead", payload={}, now=clock.now())
    from guahao.outbox.models import OutboxMessage

    async with db.begin() as s:
        await s.execute(update(OutboxMessage).where(OutboxMessage.dedupe_key == "times-dead")
                        .values(state="dead", done_at=clock.now()))

    views = {"patients": ("/api/v1/me/patients", token), "patient": (f"/api/v1/me/patients/{patient}", token),
             "staff users": ("/api/v1/staff/users", operator), "dead letters": ("/api/v1/staff/jobs/dead", operator)}
    for name, (url, bearer) in views.items():
        answer = await client.get(url, headers=auth(bearer))
        assert answer.status_code == 200, (name, answer.text)
        assert assert_all_local(answer.json(), name) >= 1, name


async def test_a_login_tells_its_expiry_in_china_time(app, client):
    from tests.test_accounts import login, new_phone, send_code

    phone, e164 = new_phone()
    answer = await login(client, phone, await send_code(client, app, phone, e164))
    assert answer.status_code == 200, answer.text
    assert assert_all_local(answer.json(), "login") == 1


async def test_a_refusal_gives_its_time_in_the_hospitals_zone(client, db, clock, fake):
    world = await _afternoon_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    held = await client.post("/api/v1/bookings", json={"slot_id": world["slot"], "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": "times-2"})
    no = (await start_payment(client, token, held.json()["id"])).json()["pay_url"].rsplit("/", 1)[1]
    headers, body = fake.pay(no)
    await client.post("/api/v1/payments/notify/paysim", content=body, headers=headers)
    clock.set(dt.datetime.combine(DAY, dt.time(0, 5), tzinfo=SHANGHAI))

    refused = await client.post(f"/api/v1/bookings/{held.json()['id']}/cancel", headers=auth(token))

    assert refused.status_code == 409 and refused.json()["deadline"] == f"{DAY.isoformat()}T00:00:00+08:00"
