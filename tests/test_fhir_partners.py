"""Partner systems: OAuth2 client credentials (Authlib's grant) give a short token with the
scopes the partner was granted; $find needs one (or a patient's session); booking needs a
patient's session; a deactivated partner's token stops working at once."""
from __future__ import annotations

import uuid

from sqlalchemy import update

from guahao.fhir import auth as fhir_auth
from guahao.fhir.models import FhirClient
from tests.builders import auth
from tests.fhir_support import BASE, DAY, check_body, entries, parameters, world

FIND = parameters(start=DAY.isoformat(), end=DAY.isoformat())


async def _client(db, now, scopes="system/Slot.read system/Schedule.read"):
    async with db.begin() as session:
        return await fhir_auth.do_create_client(session, name="区域平台", scopes=scopes, now=now)


async def _token(client, client_id, secret, **form):
    return await client.post(f"{BASE}/auth/token", data={"grant_type": "client_credentials", **form},
                             auth=(client_id, secret))


async def test_a_partner_gets_a_token_and_finds_slots(client, db, clock):
    await world(db, clock.now())
    client_id, secret = await _client(db, clock.now())
    response = await _token(client, client_id, secret, scope="system/Slot.read")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "Bearer" and token["scope"] == "system/Slot.read" and token["expires_in"] == 900
    found = await client.post(f"{BASE}/Appointment/$find", json=FIND, headers=auth(token["access_token"]))
    assert found.status_code == 200 and check_body(found)["total"] == 1


async def test_secret_in_the_body_works_and_a_wrong_secret_does_not(client, db, clock):
    client_id, secret = await _client(db, clock.now())
    posted = await client.post(f"{BASE}/auth/token", data={"grant_type": "client_credentials",
                                                           "client_id": client_id, "client_secret": secret})
    assert posted.status_code == 200, posted.text
    wrong = await _token(client, client_id, secret + "x")
    assert wrong.status_code in (400, 401) and wrong.json()["error"] == "invalid_client"
    unknown = await _token(client, "fhir-nobody", secret)
    assert unknown.json()["error"] == "invalid_client"
    grant = await client.post(f"{BASE}/auth/token", data={"grant_type": "password"}, auth=(client_id, secret))
    assert grant.json()["error"] == "unsupported_grant_type"


async def test_scopes_are_enforced(client, db, clock):
    await world(db, clock.now())
    client_id, secret = await _client(db, clock.now(), scopes="system/Schedule.read")
    refused = await _token(client, client_id, secret, scope="system/Slot.read")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    token = (await _token(client, client_id, secret)).json()["access_token"]
    found = await client.post(f"{BASE}/Appointment/$find", json=FIND, headers=auth(token))
    assert found.status_code == 403 and check_body(found)["entry"][0]["resource"]["issue"][0]["code"] == "forbidden"


async def test_a_partner_cannot_book_or_read_appointments(client, db, clock):
    w = await world(db, clock.now())
    client_id, secret = await _client(db, clock.now())
    token = (await _token(client, client_id, secret)).json()["access_token"]
    body = parameters(appointment_reference=f"Appointment/proposed-{w['slots'][0]}",
                      patient_reference=f"Patient/{w['patient']}")
    held = await client.post(f"{BASE}/Appointment/$hold", json=body,
                             headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert held.status_code == 401
    assert (await client.get(f"{BASE}/Appointment", headers=auth(token))).status_code == 401


async def test_deactivated_or_expired_tokens_stop_working(client, db, clock):
    await world(db, clock.now())
    client_id, secret = await _client(db, clock.now())
    token = (await _token(client, client_id, secret)).json()["access_token"]
    clock.advance(minutes=16)
    expired = await client.post(f"{BASE}/Appointment/$find", json=FIND, headers=auth(token))
    assert expired.status_code == 401
    token = (await _token(client, client_id, secret)).json()["access_token"]
    async with db.begin() as session:
        await session.execute(update(FhirClient).where(FhirClient.client_id == client_id).values(active=False))
    gone = await client.post(f"{BASE}/Appointment/$find", json=FIND, headers=auth(token))
    assert gone.status_code == 401
    assert entries(check_body(gone))[0]["issue"][0]["code"] == "login"
    tampered = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")
    assert (await client.post(f"{BASE}/Appointment/$find", json=FIND, headers=auth(tampered))).status_code == 401


async def test_a_patient_session_may_find_too(client, db, clock):
    w = await world(db, clock.now())
    found = await client.post(f"{BASE}/Appointment/$find", json=FIND, headers=auth(w["token"]))
    assert check_body(found)["total"] == 1
    assert (await client.post(f"{BASE}/Appointment/$find", json=FIND)).status_code == 401


class _CountingHasher:
    """argon2, counting the verifications (the work a refused token request must not cause)."""

    def __init__(self, real):
        self.real, self.verified = real, 0

    def verify(self, *args):
        self.verified += 1
        return self.real.verify(*args)

    def hash(self, *args):
        return self.real.hash(*args)


async def test_the_token_endpoint_is_rate_limited_per_client_before_any_hash(client, db, clock, monkeypatch):
    client_id, secret = await _client(db, clock.now())
    other_id, other_secret = await _client(db, clock.now())
    monkeypatch.setattr(fhir_auth, "TOKEN_LIMIT_PER_CLIENT", "3/minute")
    hasher = _CountingHasher(fhir_auth._hasher)
    monkeypatch.setattr(fhir_auth, "_hasher", hasher)
    for _ in range(3):
        assert (await _token(client, client_id, secret + "x")).json()["error"] == "invalid_client"
    assert hasher.verified == 3
    refused = await _token(client, client_id, secret)  # even the right secret: the client waits
    assert refused.status_code == 429 and hasher.verified == 3
    issue = check_body(refused)["issue"][0]
    assert (issue["severity"], issue["code"], issue["details"]["coding"][0]["code"]) == \
        ("error", "throttled", "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert "秒后再试" in issue["details"]["text"]
    english = await client.post(f"{BASE}/auth/token", data={"grant_type": "client_credentials"},
                                auth=(client_id, secret), headers={"Accept-Language": "en"})
    assert english.status_code == 429 and "Too many requests" in check_body(english)["issue"][0]["details"]["text"]
    assert (await _token(client, other_id, other_secret)).status_code == 200  # another partner is not held up


async def test_the_token_endpoint_is_rate_limited_per_address(client, db, clock, monkeypatch):
    monkeypatch.setattr(fhir_auth, "TOKEN_LIMIT_PER_ADDRESS", "4/minute")
    client_id, secret = await _client(db, clock.now())
    answers = [(await _token(client, f"fhir-guess{n}", "x")).status_code for n in range(4)]
    assert 429 not in answers  # unknown client ids: invalid_client, counted for the address
    assert (await _token(client, client_id, secret)).status_code == 429
