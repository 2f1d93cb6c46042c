"""病情描述 (reason for visit) on a booking: optional, length-limited, encrypted at rest, only
with the health-data consent, shown to the patient on the booking and to the booking's own
hospital on its single read (audited), never in lists, in the stored hold answer or the log."""
from __future__ import annotations

import json
import re

import httpx
import pytest
from sqlalchemy import select, text

from guahao.accounts.models import Consent
from guahao.core.audit import AuditEntry
from guahao.core.idempotency import IdempotencyKey
from tests.booking_builders import make_patient
from tests.builders import auth, make_account, make_staff
from tests.conftest import remember_sensitive
from tests.test_web_pages import _add_verified_patient
from tests.web_support import csrf_of, login_with_forms, make_world, new_person

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def browser_client(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": "text/html", "Accept-Language": "zh-CN"}) as c:
        yield c


REASON = "胸闷气短三天,夜间加重,既往无心脏病史"


async def _hold(client, token: str, key: str, **body):
    return await client.post("/api/v1/bookings", headers={**auth(token), "Idempotency-Key": key}, json=body)


async def test_a_description_needs_the_health_consent_and_is_kept_encrypted(app, db, clock, client):
    remember_sensitive(REASON)
    world = await make_world(db, clock)
    account, token = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account)

    refused = await _hold(client, token, "k-reason-1", slot_id=world["slot"], patient_id=patient, visit_reason=REASON)
    assert refused.status_code == 422 and refused.json()["code"] == "visit_reason_consent_required"
    too_long = await _hold(client, token, "k-reason-2", slot_id=world["slot"], patient_id=patient,
                           visit_reason="痛" * 301, health_consent=True)
    assert too_long.status_code == 422 and "痛痛痛" not in too_long.text

    held = await _hold(client, token, "k-reason-3", slot_id=world["slot"], patient_id=patient, visit_reason=REASON,
                       health_consent=True)
    assert held.status_code == 201, held.text
    assert held.json()["visit_reason"] is None  # the hold's answer is stored with its key: no health data in it
    booking_id = held.json()["id"]
    detail = (await client.get(f"/api/v1/bookings/{booking_id}", headers=auth(token))).json()
    assert detail["visit_reason"] == REASON
    listing = (await client.get("/api/v1/bookings", headers=auth(token))).json()
    assert listing["items"][0]["visit_reason"] is None

    async with db.read() as s:
        raw = (await s.execute(text("SELECT text FROM booking_reasons"))).scalar_one()
        answers = [json.dumps(r.response, ensure_ascii=False) for r in await s.scalars(select(IdempotencyKey))]
        kinds = set(await s.scalars(select(Consent.kind).where(Consent.account_id == account)))
    assert REASON not in raw and "胸闷" not in raw
    assert answers and all(REASON not in a for a in answers)
    assert "health" in kinds


async def test_the_consent_is_asked_once_per_account(app, db, clock, client):
    world = await make_world(db, clock)
    account, token = await make_account(db, clock.now())
    first = await make_patient(db, clock.now(), account)
    second = await make_patient(db, clock.now(), account, name="王大明")
    ok = await _hold(client, token, "k-once-1", slot_id=world["slot"], patient_id=first, visit_reason="头痛",
                     health_consent=True)
    assert ok.status_code == 201, ok.text
    again = await _hold(client, token, "k-once-2", slot_id=world["slot"], patient_id=second, visit_reason="发热")
    assert again.status_code == 201, again.text
    # without a description nothing about consent is asked
    other, other_token = await make_account(db, clock.now())
    plain = await _hold(client, other_token, "k-once-3", slot_id=world["slot"],
                        patient_id=await make_patient(db, clock.now(), other, name="李四"))
    assert plain.status_code == 201, plain.text


async def test_the_hospital_reads_it_on_the_single_booking_only_and_audited(app, db, clock, client):
    remember_sensitive(REASON)
    world = await make_world(db, clock)
    account, token = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account)
    held = await _hold(client, token, "k-staff-1", slot_id=world["slot"], patient_id=patient, visit_reason=REASON,
                       health_consent=True)
    booking_id = held.json()["id"]
    desk, desk_token = await make_staff(db, clock.now(), role="front_desk", hospital_id=world["hospital"])
    from tests.builders import make_hospital

    elsewhere = await make_hospital(db, clock.now(), name="别的医院")
    _, stranger_token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=elsewhere)
    _, operator_token = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)

    found = await client.get(f"/api/v1/staff/hospitals/{world['hospital']}/bookings", headers=auth(desk_token))
    assert found.status_code == 200 and REASON not in found.text
    one = await client.get(f"/api/v1/staff/bookings/{booking_id}", headers=auth(desk_token))
    assert one.status_code == 200 and one.json()["visit_reason"] == REASON
    assert one.headers["cache-control"] == "no-store"
    assert (await client.get(f"/api/v1/staff/bookings/{booking_id}", headers=auth(stranger_token))).status_code == 404
    platform = await client.get(f"/api/v1/staff/bookings/{booking_id}", headers=auth(operator_token))
    assert platform.status_code == 200 and platform.json()["visit_reason"] is None
    async with db.read() as s:
        entries = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "booking.visit_reason_read")))
    assert [(e.staff_id, e.object_id) for e in entries] == [(desk, str(booking_id))]
    assert REASON not in entries[0].detail


async def test_the_confirm_page_sends_it_and_the_booking_page_shows_it(app, db, clock, browser_client):
    remember_sensitive(REASON)
    c = browser_client
    world = await make_world(db, clock)
    await login_with_forms(c, app)
    patient_id = await _add_verified_patient(c, new_person())
    confirm = await c.get(f"/book/{world['slot']}")
    assert 'name="visit_reason"' in confirm.text and 'id="consent_health"' in confirm.text
    data = {"csrf_token": csrf_of(confirm.text), "patient_id": str(patient_id), "visit_reason": REASON,
            "idempotency_key": re.search(r'name="idempotency_key" value="([0-9a-f]+)"', confirm.text).group(1)}
    refused = await c.post(f"/book/{world['slot']}", data=data)
    assert refused.status_code == 422 and "病情描述属于敏感个人信息" in refused.text
    assert REASON in refused.text  # given back in the form, on the patient's own page
    key = re.search(r'name="idempotency_key" value="([0-9a-f]+)"', refused.text).group(1)
    held = await c.post(f"/book/{world['slot']}", data={**data, "idempotency_key": key,
                                                        "consent_health": "2026-12"})
    assert held.status_code == 303, held.text
    booking_id = int(re.search(r"/bookings/(\d+)", held.headers["location"]).group(1))
    detail = await c.get(f"/bookings/{booking_id}")
    assert REASON in detail.text.split('id="visit-reason"')[1][:200]
    assert REASON not in (await c.get("/bookings")).text
    again = await c.get(f"/book/{world['slot']}")
    assert 'id="consent_health"' not in again.text  # consented once, not asked again


async def test_the_window_page_shows_it_only_on_request_and_audits_it(app, db, clock, client):
    from tests.staff_web_support import login, make_staff_user, page_client, text_of

    remember_sensitive(REASON)
    world = await make_world(db, clock)
    account, token = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account)
    held = await _hold(client, token, "k-page-1", slot_id=world["slot"], patient_id=patient, visit_reason=REASON,
                       health_consent=True)
    booking_id, hid = held.json()["id"], world["hospital"]
    desk = await make_staff_user(db, clock.now(), role="front_desk", hospital_id=hid)
    async with page_client(app) as browser:
        await login(browser, desk)
        page = await browser.get(f"/staff/hospitals/{hid}/bookings/{booking_id}")
        assert page.status_code == 200 and REASON not in page.text and 'id="show-visit-reason"' in page.text
        shown = await browser.post(f"/staff/hospitals/{hid}/bookings/{booking_id}/visit-reason",
                                   data={"csrf_token": csrf_of(page.text)})
        assert shown.status_code == 200 and REASON in text_of(shown.text)
        assert shown.headers["cache-control"] == "no-store"
        again = await browser.get(f"/staff/hospitals/{hid}/bookings/{booking_id}")
        assert REASON not in again.text  # not kept on later pages
    async with db.read() as s:
        reads = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "booking.visit_reason_read")))
    assert len(reads) == 1 and reads[0].object_id == str(booking_id)
