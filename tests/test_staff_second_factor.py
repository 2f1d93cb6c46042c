"""Everyone changes their own password; operators and admins add a TOTP second factor
(enrol, confirm, then login needs a fresh code); audited (issue 10)."""
from __future__ import annotations

import datetime as dt
import urllib.parse

import pyotp
from sqlalchemy import select, text

from guahao.core.audit import AuditEntry
from guahao.staff import service as staff_service
from guahao.staff import totp as totp_service
from guahao.staff.models import StaffLoginThrottle
from tests.builders import auth, make_hospital
from tests.test_staff import PASSWORD, create_user, staff_login

NEW_PASSWORD = "a much longer new passphrase"


async def _token(client, username, password=PASSWORD, **extra):
    r = await client.post("/api/v1/staff/auth/login", json={"username": username, "password": password, **extra})
    assert r.status_code == 200, r.text
    return r.json()["token"]


async def _actions(db) -> list[str]:
    async with db.read() as s:
        return list(await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


async def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    username = await create_user(db, clock, role="front_desk", hospital_id=hospital)
    here, elsewhere = await _token(client, username), await _token(client, username)
    url = "/api/v1/staff/me/password"
    wrong = await client.post(url, json={"current_password": "not it at all", "new_password": NEW_PASSWORD},
                              headers=auth(here))
    assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_credentials"
    short = await client.post(url, json={"current_password": PASSWORD, "new_password": "short"}, headers=auth(here))
    assert short.status_code == 422
    r = await client.post(url, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}, headers=auth(here))
    assert r.status_code == 204, r.text
    assert (await client.get("/api/v1/staff/me", headers=auth(here))).status_code == 200
    assert (await client.get("/api/v1/staff/me", headers=auth(elsewhere))).status_code == 401
    assert (await staff_login(client, username)).status_code == 401
    assert (await staff_login(client, username, NEW_PASSWORD)).status_code == 200
    assert "staff.password_change" in await _actions(db)


async def test_front_desk_users_cannot_enrol_a_second_factor(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    token = await _token(client, await create_user(db, clock, role="front_desk", hospital_id=hospital))
    assert (await client.post("/api/v1/staff/me/totp", headers=auth(token))).status_code == 403


async def test_admin_enrols_totp_and_login_then_needs_a_fresh_code(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    username = await create_user(db, clock, role="hospital_admin", hospital_id=hospital)
    token = await _token(client, username)
    enrol = await client.post("/api/v1/staff/me/totp", headers=auth(token))
    assert enrol.status_code == 201, enrol.text
    uri = enrol.json()["otpauth_uri"]
    assert uri.startswith("otpauth://totp/") and enrol.headers["cache-control"] == "no-store"
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
    async with db.read() as s:  # encrypted at rest
        stored = await s.scalar(text("SELECT secret FROM staff_totp"))
    assert secret not in stored
    async with db.read() as s:  # pending until confirmed: login does not ask for a code yet
        assert not await totp_service.is_enabled(s, (await staff_service.get_by_username(s, username)).id)
    totp = pyotp.TOTP(secret)
    bad = await client.post("/api/v1/staff/me/totp/confirm", json={"code": "000000" if totp.at(clock.now()) != "000000"
                                                                   else "111111"}, headers=auth(token))
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_otp"
    ok = await client.post("/api/v1/staff/me/totp/confirm", json={"code": totp.at(clock.now())}, headers=auth(token))
    assert ok.status_code == 200 and ok.json() == {"enabled": True}

    missing = await staff_login(client, username)
    assert missing.status_code == 401 and missing.json()["code"] == "otp_required"
    replay = await client.post("/api/v1/staff/auth/login",
                               json={"username": username, "password": PASSWORD, "otp": totp.at(clock.now())})
    assert replay.status_code == 401 and replay.json()["code"] == "invalid_otp"  # the confirm used this step
    clock.advance(seconds=30)
    fresh = totp.at(clock.now())
    assert (await _token(client, username, otp=fresh))
    again = await client.post("/api/v1/staff/auth/login", json={"username": username, "password": PASSWORD,
                                                                "otp": fresh})
    assert again.status_code == 401 and again.json()["code"] == "invalid_otp"
    actions = await _actions(db)
    assert "staff.totp_enroll" in actions and "staff.totp_enable" in actions
    again_enrol = await client.post("/api/v1/staff/me/totp", headers=auth(token))
    assert again_enrol.status_code == 409


async def test_wrong_codes_count_toward_the_lockout(client, db, clock, settings):
    operator = await create_user(db, clock, role="platform_operator", hospital_id=None)
    async with db.begin() as s:  # a session without the login route: its rate limit is for the test below
        token = await staff_service.do_open_session(s, await staff_service.get_by_username(s, operator),
                                                    now=clock.now())
    uri = (await client.post("/api/v1/staff/me/totp", headers=auth(token))).json()["otpauth_uri"]
    totp = pyotp.TOTP(urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0])
    assert (await client.post("/api/v1/staff/me/totp/confirm", json={"code": totp.at(clock.now())},
                              headers=auth(token))).status_code == 200
    wrong = str((int(totp.at(clock.now() + dt.timedelta(minutes=5))) + 1) % 1_000_000).zfill(6)
    answers = []
    for _ in range(settings.staff_login_max_failures):
        r = await client.post("/api/v1/staff/auth/login",
                              json={"username": operator, "password": PASSWORD, "otp": wrong})
        answers.append(r.json()["code"])
    assert answers == ["invalid_otp"] * settings.staff_login_max_failures
    async with db.read() as s:  # the last wrong code locked the username, as a wrong password does
        throttle = await s.get(StaffLoginThrottle, operator)
        assert throttle is not None and throttle.locked_until > clock.now()
        assert await s.scalar(select(AuditEntry.id).where(AuditEntry.action == "staff.login_locked")) is not None


async def test_an_admin_resets_the_second_factor_of_a_user_of_their_hospital(client, db, clock):
    hospital = await make_hospital(db, clock.now())
    other = await make_hospital(db, clock.now(), name="乙医院")
    colleague = await create_user(db, clock, role="hospital_admin", hospital_id=hospital)
    admin_token = await _token(client, await create_user(db, clock, role="hospital_admin", hospital_id=hospital))
    stranger = await _token(client, await create_user(db, clock, role="hospital_admin", hospital_id=other))
    token = await _token(client, colleague)
    uri = (await client.post("/api/v1/staff/me/totp", headers=auth(token))).json()["otpauth_uri"]
    code = pyotp.TOTP(urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]).at(clock.now())
    assert (await client.post("/api/v1/staff/me/totp/confirm", json={"code": code},
                              headers=auth(token))).status_code == 200
    async with db.read() as s:
        colleague_id = (await staff_service.get_by_username(s, colleague)).id
    url = f"/api/v1/staff/users/{colleague_id}/totp/reset"
    assert (await client.post(url, headers=auth(stranger))).status_code == 404
    r = await client.post(url, headers=auth(admin_token))
    assert r.status_code == 200 and r.json() == {"enabled": False}
    assert (await staff_login(client, colleague)).status_code == 200  # the password alone again
    assert "staff.totp_reset" in await _actions(db)
    again = await client.post(url, headers=auth(admin_token))
    assert again.status_code == 409 and again.json()["code"] == "totp_not_enrolled"
