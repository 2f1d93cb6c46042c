"""Patients (就诊人) through the HTTP API, on SQLite and PostgreSQL."""
from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import re

import pytest
from sqlalchemy import func, select, text

from guahao.core.idcard import check_char
from guahao.patients.models import Patient, Person
from tests.builders import auth, make_account
from tests.conftest import remember_sensitive

BASE = "/api/v1/me/patients"
EN = {"Accept-Language": "en"}
_seq = itertools.count(1)


def new_resident_id(birth: dt.date = dt.date(1990, 3, 7), sex: str = "M") -> str:
    n = next(_seq)
    body = f"{110000 + n // 500:06d}{birth:%Y%m%d}{(n % 500) * 2 + (sex == 'M'):03d}"
    number = body + check_char(body)
    remember_sensitive(number, number.lower())
    return number


def new_phone() -> str:
    phone = f"139{next(_seq) % 10**8:08d}"
    remember_sensitive(phone, "+86" + phone)
    return phone


def patient_body(**overrides) -> dict:
    body = {"relationship": "child", "name": "张三", "id_number": new_resident_id(), "phone": new_phone()}
    body.update(overrides)
    remember_sensitive(body["name"].strip())  # a blank name is refused, and would match any log
    return body


def assert_masked(payload: dict, body: dict) -> None:
    """Every personal value leaves only masked, in the documented shapes."""
    assert re.fullmatch(r".\*+", payload["name"])
    assert payload["name"][0] == body["name"][0]
    assert re.fullmatch(r"[0-9]\*{16}[0-9X]", payload["id_number"])
    assert re.fullmatch(r"1[0-9]{2}\*{4}[0-9]{4}", payload["phone"])


def assert_no_plaintext(response, *values: str) -> None:
    for value in values:
        assert value not in response.text


async def add(client, token: str, **overrides):
    body = patient_body(**overrides)
    return await client.post(BASE, json=body, headers=auth(token)), body


async def test_add_list_get_edit_remove_through_the_api_shows_only_masked_values(client, db, clock):
    _, token = await make_account(db, clock.now())
    r, body = await add(client, token, id_number=new_resident_id(dt.date(2016, 5, 1), "F"))
    assert r.status_code == 201, r.text
    created = r.json()
    assert_masked(created, body)
    assert created["name"] == "张*" and created["phone"].startswith("139")
    assert (created["birth_date"], created["sex"], created["age"]) == ("2016-05-01", "F", 10)
    assert created["verification"] == "unverified" and created["id_type"] == "resident_id"
    secrets = (body["name"], body["id_number"], body["phone"])
    assert_no_plaintext(r, *secrets)

    r = await client.get(BASE, headers=auth(token))
    page = r.json()
    assert page["total"] == 1 and page["max_patients"] == 5 and page["items"][0]["id"] == created["id"]
    assert_masked(page["items"][0], body)
    assert_no_plaintext(r, *secrets)

    r = await client.get(f"{BASE}/{created['id']}", headers=auth(token))
    assert r.status_code == 200 and r.json() == created
    assert_no_plaintext(r, *secrets)

    new_name, phone = "李四", new_phone()
    remember_sensitive(new_name)
    r = await client.patch(f"{BASE}/{created['id']}", headers=auth(token),
                           json={"name": new_name, "phone": phone, "relationship": "parent",
                                 "insurance_card": "yb 1234 5678", "visit_card": "JZ-998877"})
    assert r.status_code == 200, r.text
    edited = r.json()
    assert (edited["name"], edited["relationship"], edited["id_number"]) == ("李*", "parent", created["id_number"])
    assert edited["insurance_card"] == "******5678" and edited["visit_card"] == "*****8877"
    assert_no_plaintext(r, new_name, phone, "YB12345678")
    async with db.read() as s:
        row = await s.get(Patient, created["id"])
        assert (row.name, row.phone, row.insurance_card) == (new_name, "+86" + phone, "YB12345678")

    r = await client.patch(f"{BASE}/{created['id']}", headers=auth(token), json={"insurance_card": None})
    assert r.json()["insurance_card"] is None and r.json()["visit_card"] == "*****8877"

    r = await client.delete(f"{BASE}/{created['id']}", headers=auth(token))
    assert r.status_code == 204
    assert (await client.get(BASE, headers=auth(token))).json()["total"] == 0
    r = await client.get(f"{BASE}/{created['id']}", headers=auth(token))
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    async with db.read() as s:
        assert (await s.get(Patient, created["id"])).removed_at == clock.now()


def patient_item_routes(app) -> list[tuple[str, str]]:
    # The OpenAPI document is the public form of the route table (app.routes nests routers).
    return sorted((method.upper(), path) for path, operations in app.openapi()["paths"].items()
                  if path.startswith(f"{BASE}/{{patient_id}}") for method in operations)


ITEM_BODIES = {
    ("GET", f"{BASE}/{{patient_id}}"): None,
    ("PATCH", f"{BASE}/{{patient_id}}"): {"relationship": "other"},
    ("DELETE", f"{BASE}/{{patient_id}}"): None,
    ("POST", f"{BASE}/{{patient_id}}/verify"): {"liveness_token": "pass"},
    ("GET", f"{BASE}/{{patient_id}}/visit-cards"): None,
    ("PUT", f"{BASE}/{{patient_id}}/visit-cards/{{hospital_id}}"): {"card_number": "12345678"},
    ("DELETE", f"{BASE}/{{patient_id}}/visit-cards/{{hospital_id}}"): None,
}


async def test_another_accounts_patient_is_404_on_every_patient_route(app, client, db, clock):
    # The route list comes from the app: a new patient route without a body here fails the test.
    routes = patient_item_routes(app)
    assert set(routes) == set(ITEM_BODIES), "add the new route to ITEM_BODIES"
    _, token_a = await make_account(db, clock.now())
    _, token_b = await make_account(db, clock.now())
    r, _ = await add(client, token_a)
    patient_id = r.json()["id"]
    for method, path in routes:
        url = path.replace("{patient_id}", str(patient_id)).replace("{hospital_id}", "1")
        r = await client.request(method, url, json=ITEM_BODIES[(method, path)], headers=auth(token_b))
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["code"] == "not_found"
        # and exactly the answer a missing id gets: nothing tells B that the id exists
        missing = await client.request(method, path.replace("{patient_id}", "999999999").replace("{hospital_id}", "1"),
                                       json=ITEM_BODIES[(method, path)], headers=auth(token_b))
        assert missing.status_code == 404 and missing.json()["detail"] == r.json()["detail"]
    r = await client.get(f"{BASE}/{patient_id}", headers=auth(token_a))
    assert r.status_code == 200 and r.json()["relationship"] == "child"
    assert r.json()["verification"] == "unverified"
    assert (await client.get(BASE, headers=auth(token_b))).json()["items"] == []


async def test_patient_routes_require_login(client):
    for method, url in (("GET", BASE), ("POST", BASE), ("GET", f"{BASE}/1"), ("DELETE", f"{BASE}/1")):
        r = await client.request(method, url, json={} if method == "POST" else None)
        assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


async def test_account_holds_at_most_the_configured_number_of_patients(client, db, clock):
    _, token = await make_account(db, clock.now())
    ids = []
    for _ in range(5):
        r, _ = await add(client, token)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    r, _ = await add(client, token)
    assert r.status_code == 409 and r.json()["code"] == "too_many_patients" and r.json()["limit"] == 5
    r = await client.post(BASE, json=patient_body(), headers={**auth(token), **EN})
    assert "at most 5 patients" in r.json()["detail"]
    await client.delete(f"{BASE}/{ids[0]}", headers=auth(token))
    r, _ = await add(client, token)
    assert r.status_code == 201


async def test_concurrent_adds_never_exceed_the_limit(app, client, db, clock):
    app.state.settings.max_patients_per_account = 5
    account_id, token = await make_account(db, clock.now())
    bodies = [patient_body() for _ in range(10)]
    responses = await asyncio.gather(*(client.post(BASE, json=b, headers=auth(token)) for b in bodies))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] * 5 + [409] * 5, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"too_many_patients"}
    async with db.read() as s:
        live = await s.scalar(select(func.count()).select_from(Patient).where(
            Patient.account_id == account_id, Patient.removed_at.is_(None)))
    assert live == 5


async def test_same_person_twice_in_one_account_is_refused_until_removed(client, db, clock):
    _, token = await make_account(db, clock.now())
    number = new_resident_id(sex="F")
    first, _ = await add(client, token, id_number=number.replace("X", "x"))
    assert first.status_code == 201, first.text
    r, _ = await add(client, token, id_number=f" {number} ", name="王五")
    assert r.status_code == 409 and r.json()["code"] == "duplicate_patient"
    await client.delete(f"{BASE}/{first.json()['id']}", headers=auth(token))
    r, _ = await add(client, token, id_number=number)
    assert r.status_code == 201


async def test_same_person_under_two_accounts_links_to_one_person(client, db, clock):
    _, token_a = await make_account(db, clock.now())
    _, token_b = await make_account(db, clock.now())
    number = new_resident_id()
    a, _ = await add(client, token_a, id_number=number, relationship="self")
    b, _ = await add(client, token_b, id_number=number.lower(), relationship="parent")
    assert a.status_code == b.status_code == 201
    async with db.read() as s:
        pa, pb = await s.get(Patient, a.json()["id"]), await s.get(Patient, b.json()["id"])
        assert pa.person_id == pb.person_id and pa.account_id != pb.account_id


async def test_concurrent_adds_of_one_person_by_many_accounts_create_one_person_row(client, db, clock):
    tokens = [(await make_account(db, clock.now()))[1] for _ in range(6)]
    number = new_resident_id()
    responses = await asyncio.gather(*(client.post(BASE, json=patient_body(id_number=number), headers=auth(t))
                                       for t in tokens))
    assert [r.status_code for r in responses] == [201] * 6, [r.text for r in responses]
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Person)) == 1
        assert len(set(await s.scalars(select(Patient.person_id)))) == 1


async def test_only_one_self_per_account(client, db, clock):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token, relationship="self")
    assert r.status_code == 201
    r, _ = await add(client, token, relationship="self")
    assert r.status_code == 409 and r.json()["code"] == "self_already_exists"
    other, _ = await add(client, token, relationship="spouse")
    r = await client.patch(f"{BASE}/{other.json()['id']}", json={"relationship": "self"}, headers=auth(token))
    assert r.status_code == 409 and r.json()["code"] == "self_already_exists"


async def test_resident_id_derives_birth_date_and_sex_other_documents_need_them(client, db, clock):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token, birth_date="1990-03-07", sex="M")
    assert r.status_code == 422 and r.json()["code"] == "derived_from_id_number"
    passport = "E98765432"
    remember_sensitive(passport)
    r, _ = await add(client, token, id_type="passport", id_number=passport, name="John Smith")
    assert r.status_code == 422 and r.json()["code"] == "birth_date_and_sex_required"
    r, _ = await add(client, token, id_type="passport", id_number=passport, name="John Smith",
                     birth_date="2027-01-01", sex="M")
    assert r.status_code == 422 and r.json()["code"] == "invalid_birth_date"
    r, _ = await add(client, token, id_type="passport", id_number=passport.lower(), name="John Smith",
                     birth_date="1975-06-30", sex="M")
    assert r.status_code == 201, r.text
    assert (r.json()["id_number"], r.json()["birth_date"]) == ("E*******2", "1975-06-30")
    r, _ = await add(client, token, id_type="taiwan_permit", id_number="8307162401(B)", name="林志明",
                     birth_date="1980-02-29", sex="M")
    remember_sensitive("83071624", "8307162401(B)")  # not a substring of any public fixture (a hospital phone 010-12345678)
    assert r.status_code == 201 and r.json()["id_number"] == "8******4"


async def test_identity_fields_cannot_be_edited(client, db, clock):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token)
    for change in ({"id_number": new_resident_id()}, {"birth_date": "2000-01-01"}, {"sex": "F"}):
        resp = await client.patch(f"{BASE}/{r.json()['id']}", json=change, headers={**auth(token), **EN})
        assert resp.status_code == 422 and resp.json()["code"] == "identity_immutable"
        assert "remove this patient and add them again" in resp.json()["detail"]


@pytest.mark.parametrize("name", ["张3", "张\x00三", "张\u202e三", "张@三", "", "   ", "·张三", "张" * 31, "张<b>"])
async def test_invalid_names_are_refused(client, db, clock, name):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token, name=name)
    assert r.status_code == 422 and r.json()["code"] == "invalid_name"


@pytest.mark.parametrize(("given", "stored"), [
    ("𠈌𪚥", "𠈌𪚥"),                                # extension B rare characters (astral plane)
    ("阿依古丽•买买提", "阿依古丽·买买提"),              # bullet normalised to the middle dot
    ("  Jean-Luc   O'Brien ", "Jean-Luc O'Brien"),
    ("张" * 30, "张" * 30),
])
async def test_valid_names_are_normalised_and_stored_encrypted(client, db, clock, given, stored):
    _, token = await make_account(db, clock.now())
    remember_sensitive(stored)
    r, _ = await add(client, token, name=given)
    assert r.status_code == 201, r.text
    async with db.read() as s:
        assert (await s.get(Patient, r.json()["id"])).name == stored
        raw = (await s.execute(text("SELECT name, id_number, phone FROM patients"))).one()
    assert stored not in "".join(raw) and all(v.startswith("v2:") for v in raw)


@pytest.mark.parametrize("phone", ["01012345678", "1381234567", "+14155552671", "12345678901", "abc"])
async def test_invalid_mobile_numbers_are_refused(client, db, clock, phone):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token, phone=phone)
    assert r.status_code == 422 and r.json()["code"] == "invalid_phone"


async def test_invalid_id_number_is_problem_json_in_the_callers_language(client, db, clock):
    _, token = await make_account(db, clock.now())
    number = new_resident_id()
    wrong = number[:-1] + ("1" if number[-1] == "0" else "0")
    remember_sensitive(wrong)
    r = await client.post(BASE, json=patient_body(id_number=wrong), headers={**auth(token), **EN})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert (body["code"], body["reason"]) == ("invalid_id_number", "check_char")
    assert "(check) character" in body["detail"] and r.headers["content-language"] == "en"
    assert wrong not in r.text
    r = await client.post(BASE, json=patient_body(id_number=wrong), headers=auth(token))
    assert "校验码" in r.json()["detail"]


async def test_face_check_failure_is_recorded_and_a_pass_verifies(client, db, clock):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token)
    url = f"{BASE}/{r.json()['id']}/verify"
    r = await client.post(url, json={"liveness_token": "fail"}, headers={**auth(token), **EN})
    assert r.status_code == 422 and r.json()["code"] == "identity_check_failed"
    assert "retry" in r.json()["detail"]
    patient = (await client.get(url.removesuffix("/verify"), headers=auth(token))).json()
    assert patient["verification"] == "failed" and patient["verified_at"] is None

    r = await client.post(url, json={"liveness_token": "pass-sdk-token"}, headers=auth(token))
    assert r.status_code == 200, r.text
    assert r.json()["verification"] == "verified"
    assert dt.datetime.fromisoformat(r.json()["verified_at"]) == clock.now()
    # a retried verify does not downgrade, and needs no second check
    r = await client.post(url, json={"liveness_token": "fail"}, headers=auth(token))
    assert r.status_code == 200 and r.json()["verification"] == "verified"


async def test_changing_the_name_requires_verifying_again(client, db, clock):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token)
    url = f"{BASE}/{r.json()['id']}"
    await client.post(f"{url}/verify", json={"liveness_token": "pass"}, headers=auth(token))
    r = await client.patch(url, json={"phone": new_phone()}, headers=auth(token))
    assert r.json()["verification"] == "verified"
    remember_sensitive("张三丰")
    r = await client.patch(url, json={"name": "张三丰"}, headers=auth(token))
    assert (r.json()["verification"], r.json()["name"]) == ("unverified", "张*")


async def test_face_check_provider_is_called_outside_any_transaction(app, client, db, clock):
    _, token = await make_account(db, clock.now())
    r, _ = await add(client, token)
    checked_out = []

    class SpyFaceCheck:
        async def verify(self, *, name, id_number, liveness_token):
            from guahao.patients.face_check import FaceCheckResult

            engines = {db.engine, db.read_engine}  # two on SQLite, one on PostgreSQL
            checked_out.append(sum(engine.pool.checkedout() for engine in engines))
            return FaceCheckResult(True)

    app.state.face_check = SpyFaceCheck()
    r = await client.post(f"{BASE}/{r.json()['id']}/verify", json={"liveness_token": "x"}, headers=auth(token))
    assert r.status_code == 200 and checked_out == [0]


@pytest.mark.parametrize(("check", "overrides", "code"), [
    ("_person_taken", {"relationship": "other"}, "duplicate_patient"),
    ("_self_taken", {"relationship": "self"}, "self_already_exists"),
])
async def test_partial_unique_indexes_back_up_the_python_checks(client, db, clock, monkeypatch, check,
                                                                overrides, code):
    # Blind the pre-check once, as a code path that forgot the account lock would be: the
    # database index still refuses the row, and the answer is the same typed error.
    from guahao.patients import service

    _, token = await make_account(db, clock.now())
    number = new_resident_id()
    first, _ = await add(client, token, id_number=number, relationship="self")
    assert first.status_code == 201
    real, calls = getattr(service, check), []

    async def blind_once(*args, **kwargs):
        calls.append(1)
        return False if len(calls) == 1 else await real(*args, **kwargs)

    monkeypatch.setattr(service, check, blind_once)
    body = patient_body(**overrides)
    if code == "duplicate_patient":
        body["id_number"] = number
    r = await client.post(BASE, json=body, headers=auth(token))
    assert r.status_code == 409 and r.json()["code"] == code, r.text
    assert len(calls) == 2
    assert (await client.get(BASE, headers=auth(token))).json()["total"] == 1


async def test_self_index_backs_up_an_edit_that_skipped_the_check(client, db, clock, monkeypatch):
    from guahao.patients import service

    _, token = await make_account(db, clock.now())
    await add(client, token, relationship="self")
    other, _ = await add(client, token, relationship="spouse")
    real, calls = service._self_taken, []

    async def blind_once(*args, **kwargs):
        calls.append(1)
        return False if len(calls) == 1 else await real(*args, **kwargs)

    monkeypatch.setattr(service, "_self_taken", blind_once)
    url = f"{BASE}/{other.json()['id']}"
    r = await client.patch(url, json={"relationship": "self"}, headers=auth(token))
    assert r.status_code == 409 and r.json()["code"] == "self_already_exists", r.text
    assert (await client.get(url, headers=auth(token))).json()["relationship"] == "spouse"
