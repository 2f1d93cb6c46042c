"""就诊卡号 per hospital on a 就诊人: kept encrypted, shown masked, managed through the API and
the pages; a hospital that requires an existing record and has no HIS connection accepts its
card, while a hospital with a HIS still asks the HIS (a typed card proves nothing there)."""
from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import text

from tests.booking_builders import make_patient
from tests.builders import auth, make_account, make_department, make_hospital
from tests.conftest import remember_sensitive
from tests.his_records_support import (  # noqa: F401 (fixture)
    connect,
    fresh_his_clients,
    hold,
    hospital_world,
    operator_headers,
)
from tests.his_support import his_sim  # noqa: F401 (fixture)
from tests.test_web_pages import _add_verified_patient
from tests.web_support import DAY_OK, csrf_of, login_with_forms, new_person

pytestmark = pytest.mark.timeout(120)
CARD = "JZK20261234567"


@pytest.fixture
async def browser_client(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept": "text/html", "Accept-Language": "zh-CN"}) as c:
        yield c


def _cards(patient: int, hospital: int | None = None) -> str:
    return f"/api/v1/me/patients/{patient}/visit-cards" + (f"/{hospital}" if hospital else "")


async def test_cards_are_kept_encrypted_shown_masked_and_only_to_their_account(app, db, clock, client):
    remember_sensitive(CARD)
    hid = await make_hospital(db, clock.now(), name="北京协和医院")
    other_hid = await make_hospital(db, clock.now(), name="北京儿童医院")
    account, token = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account)

    r = await client.put(_cards(patient, hid), headers=auth(token), json={"card_number": CARD})
    assert r.status_code == 200, r.text
    assert r.json() == [{"hospital_id": hid, "hospital_name": "北京协和医院", "card_number": "**********4567",
                         "updated_at": r.json()[0]["updated_at"]}]
    r = await client.put(_cards(patient, other_hid), headers=auth(token), json={"card_number": "8800 1234"})
    assert r.status_code == 200 and {c["card_number"] for c in r.json()} == {"**********4567", "****1234"}
    # replacing keeps one card per hospital
    r = await client.put(_cards(patient, hid), headers=auth(token), json={"card_number": "A-99998888"})
    assert sorted(c["card_number"] for c in r.json()) == ["******8888", "****1234"]
    bad = await client.put(_cards(patient, hid), headers=auth(token), json={"card_number": "卡号!"})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_card_number"
    assert (await client.put(_cards(patient, 999999), headers=auth(token),
                             json={"card_number": CARD})).status_code == 404

    _, stranger = await make_account(db, clock.now())
    assert (await client.get(_cards(patient), headers=auth(stranger))).status_code == 404
    assert (await client.delete(_cards(patient, hid), headers=auth(stranger))).status_code == 404

    assert (await client.delete(_cards(patient, other_hid), headers=auth(token))).status_code == 204
    assert [c["hospital_id"] for c in (await client.get(_cards(patient), headers=auth(token))).json()] == [hid]
    assert (await client.delete(_cards(patient, other_hid), headers=auth(token))).status_code == 404
    async with db.read() as s:
        raw = (await s.execute(text("SELECT card_number FROM patient_visit_cards"))).scalars().all()
    assert len(raw) == 1 and "99998888" not in raw[0]
    # removing the patient removes its cards (the patient row stays for its bookings)
    assert (await client.delete(f"/api/v1/me/patients/{patient}", headers=auth(token))).status_code == 204
    async with db.read() as s:
        assert (await s.execute(text("SELECT count(*) FROM patient_visit_cards"))).scalar_one() == 0


async def test_a_hospital_without_a_his_accepts_its_card_as_the_record(app, db, clock, client):
    from tests.booking_builders import make_schedule

    hid = await make_hospital(db, clock.now(), name="建档医院", record_requirement="existing_record_required")
    dep = await make_department(db, hid)
    _, slots = await make_schedule(db, clock.now(), hospital_id=hid, department_id=dep, doctor_id=None, day=DAY_OK)
    account, token = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account)

    refused = await hold(client, token, slots[0], patient)
    assert refused.status_code == 409 and refused.json()["code"] == "record_required"
    assert "就诊卡号" in refused.json()["detail"]
    other = await make_hospital(db, clock.now(), name="别的医院")
    await client.put(_cards(patient, other), headers=auth(token), json={"card_number": CARD})
    assert (await hold(client, token, slots[0], patient)).json()["code"] == "record_required"  # another hospital's

    await client.put(_cards(patient, hid), headers=auth(token), json={"card_number": CARD})
    booked = await hold(client, token, slots[0], patient)
    assert booked.status_code == 201, booked.text
    assert booked.json()["record_notice"] is None


async def test_a_hospital_with_a_his_still_asks_it_whatever_card_was_typed(client, db, clock, his_sim):
    w = await hospital_world(db, clock.now(), record_requirement="existing_record_required")
    await connect(client, await operator_headers(db, clock.now()), w["hospital"], his_sim)
    r = await client.put(_cards(w["patient"], w["hospital"]), headers=auth(w["token"]), json={"card_number": CARD})
    assert r.status_code == 200
    refused = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert refused.status_code == 409 and refused.json()["code"] == "record_required"


async def test_cards_on_the_patient_pages(app, db, clock, browser_client):
    remember_sensitive(CARD)
    c = browser_client
    hid = await make_hospital(db, clock.now(), name="北京协和医院")
    await login_with_forms(c, app)
    patient_id = await _add_verified_patient(c, new_person())
    listing = await c.get("/patients")
    assert f'href="/patients/{patient_id}/cards"' in listing.text
    page = await c.get(f"/patients/{patient_id}/cards", params={"hospital": hid})
    assert "还没有添加就诊卡" in page.text and f'<option value="{hid}" selected>' in page.text
    missing = await c.post(f"/patients/{patient_id}/cards", data={"csrf_token": csrf_of(page.text),
                                                                   "hospital_id": str(hid), "card_number": ""})
    assert missing.status_code == 422 and "请选择医院并填写就诊卡号" in missing.text
    saved = await c.post(f"/patients/{patient_id}/cards", data={"csrf_token": csrf_of(page.text),
                                                                 "hospital_id": str(hid), "card_number": CARD})
    assert saved.status_code == 303
    page = await c.get(saved.headers["location"])
    row = page.text.split(f'data-hospital="{hid}"')[1][:400]
    assert "北京协和医院" in row and "4567" in row and CARD not in page.text
    removed = await c.post(f"/patients/{patient_id}/cards/{hid}/delete", data={"csrf_token": csrf_of(page.text)})
    assert removed.status_code == 303
    assert "还没有添加就诊卡" in (await c.get(f"/patients/{patient_id}/cards")).text
    no_csrf = await c.post(f"/patients/{patient_id}/cards", data={"hospital_id": str(hid), "card_number": CARD})
    assert no_csrf.status_code == 403
    assert re.search(r"4567", (await c.get(f"/patients/{patient_id}/cards")).text) is None
