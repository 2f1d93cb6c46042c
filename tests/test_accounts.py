"""Accounts: SMS-code login, sessions, the account itself."""
from __future__ import annotations

import asyncio
import itertools

import pytest
from sqlalchemy import func, select, text

from guahao.accounts import service as accounts_service
from guahao.accounts.errors import InvalidPhone
from guahao.accounts.models import Account, AuthSession, SmsCode
from guahao.core.deps import SESSION_COOKIE
from tests.builders import auth
from tests.conftest import remember_sensitive

_numbers = itertools.count(1)


def new_phone() -> tuple[str, str]:
    """A fresh mainland mobile number: (as typed, E.164)."""
    local = f"139{next(_numbers):08d}"
    remember_sensitive(local, f"+86{local}")
    return local, f"+86{local}"


async def send_code(client, app, phone: str, e164: str) -> str:
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert r.status_code == 202, r.text
    return app.state.sms.last_code(e164)


async def login(client, phone: str, code: str, **headers):
    return await client.post("/api/v1/auth/login", json={"phone": phone, "code": code}, headers=headers)


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


async def test_full_login_flow_returns_token_cookie_and_masked_phone(client, app):
    phone, e164 = new_phone()
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert r.status_code == 202
    assert r.json() == {"phone": f"{phone[:3]}****{phone[-4:]}", "expires_in": 300}
    code = app.state.sms.last_code(e164)
    assert code not in r.text and len(code) == 6 and code.isdigit()
    assert app.state.sms.sent[-1].template == "login_code"

    r = await login(client, phone, code)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "bearer" and body["token"] and body["expires_at"]
    assert body["account"]["phone"] == f"{phone[:3]}****{phone[-4:]}"
    assert phone not in r.text
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={body['token']}")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax") and "Secure" not in cookie

    me = await client.get("/api/v1/me", headers=auth(body["token"]))
    assert me.status_code == 200
    assert me.json() == {"id": body["account"]["id"], "phone": f"{phone[:3]}****{phone[-4:]}", "locale": "zh-CN"}


async def test_cookie_alone_authenticates(client, app):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    token = (await login(client, phone, code)).json()["token"]
    client.cookies.set(SESSION_COOKIE, token)
    r = await client.get("/api/v1/me")
    assert r.status_code == 200


async def test_second_login_of_a_number_reuses_its_account(client, app):
    phone, e164 = new_phone()
    first = (await login(client, phone, await send_code(client, app, phone, e164))).json()
    app.state.settings.sms_send_limit_per_number = "10/minute"  # this test is not about limits
    second = (await login(client, f"+86 {phone}", await send_code(client, app, phone, e164))).json()
    assert first["account"]["id"] == second["account"]["id"]
    assert first["token"] != second["token"]


@pytest.mark.parametrize("typed", ["13812345678", "+8613812345678", "138 1234 5678", "+86 138-1234-5678"])
def test_mobile_numbers_are_normalised_to_e164(typed):
    remember_sensitive(typed, "13812345678", "+8613812345678")
    assert accounts_service.normalize_mobile(typed) == "+8613812345678"


@pytest.mark.parametrize("typed", ["12345", "01012345678", "+14155550123", "not a phone", "1381234567"])
def test_other_numbers_are_refused(typed):
    with pytest.raises(InvalidPhone):
        accounts_service.normalize_mobile(typed)


async def test_invalid_phone_is_a_problem_in_the_callers_language(client):
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": "010-12345678"}, headers={"Accept-Language": "en"})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "invalid_phone" and "mobile number" in r.json()["detail"]
    r = await client.post("/api/v1/auth/login", json={"phone": "123", "code": "123456"})
    assert r.json()["code"] == "invalid_phone" and "手机号" in r.json()["detail"]


async def test_code_works_only_once(client, app):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    assert (await login(client, phone, code)).status_code == 200
    r = await login(client, phone, code)
    assert r.status_code == 400 and r.json()["code"] == "code_used"


async def test_ten_concurrent_logins_with_one_code_give_exactly_one_session(client, app, db):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    answers = await asyncio.gather(*(login(client, phone, code) for _ in range(10)))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200] + [400] * 9, [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 400} == {"code_used"}
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(Account)) == 1
        assert await s.scalar(select(func.count()).select_from(AuthSession)) == 1


async def test_concurrent_first_logins_of_one_number_create_one_account(db, clock):
    # two codes cannot both be live for one number, so drive get-or-create directly
    _, e164 = new_phone()

    async def first_login():
        async with db.begin() as s:
            return (await accounts_service.do_get_or_create_account(s, e164, now=clock.now())).id

    ids = await asyncio.gather(*(first_login() for _ in range(5)))
    assert len(set(ids)) == 1


async def test_code_expires_after_five_minutes(client, app, clock):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    clock.advance(minutes=5)
    r = await login(client, phone, code, **{"Accept-Language": "en"})
    assert r.status_code == 400 and r.json()["code"] == "code_expired"
    assert "request a new code" in r.json()["detail"]


async def test_code_still_works_just_before_it_expires(client, app, clock):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    clock.advance(minutes=4, seconds=59)
    assert (await login(client, phone, code)).status_code == 200


async def test_five_wrong_tries_kill_the_code_even_if_the_sixth_is_right(client, app):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    for left in (4, 3, 2, 1):
        r = await login(client, phone, wrong(code), **{"Accept-Language": "en"})
        assert r.status_code == 400 and r.json()["code"] == "code_invalid"
        assert r.json()["attempts_left"] == left and f"{left} more tries" in r.json()["detail"]
    r = await login(client, phone, wrong(code))
    assert r.json()["code"] == "code_attempts_exceeded"
    r = await login(client, phone, code)
    assert r.status_code == 400 and r.json()["code"] == "code_attempts_exceeded"


async def test_a_wrong_try_is_committed_although_the_request_fails(client, app, db):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    await login(client, phone, wrong(code))
    async with db.read() as s:
        assert await s.scalar(select(SmsCode.attempts)) == 1


async def test_concurrent_wrong_tries_never_count_past_the_limit(client, app, db):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    answers = await asyncio.gather(*(login(client, phone, wrong(code)) for _ in range(12)))
    assert sum(r.json()["code"] == "code_invalid" for r in answers) == 4
    async with db.read() as s:
        assert await s.scalar(select(SmsCode.attempts)) == 5
    assert (await login(client, phone, code)).json()["code"] == "code_attempts_exceeded"


async def test_a_new_code_supersedes_the_old_one(client, app):
    app.state.settings.sms_send_limit_per_number = "10/minute"
    phone, e164 = new_phone()
    old = await send_code(client, app, phone, e164)
    new = await send_code(client, app, phone, e164)
    while new == old:  # one chance in a million
        new = await send_code(client, app, phone, e164)
    assert (await login(client, phone, old)).json()["code"] == "code_invalid"
    assert (await login(client, phone, new)).status_code == 200


async def test_login_without_a_code_sent_is_refused(client):
    phone, _ = new_phone()
    r = await login(client, phone, "123456")
    assert r.status_code == 400 and r.json()["code"] == "code_not_requested"


async def test_codes_and_phones_are_not_stored_in_plain_text(client, app, db):
    phone, e164 = new_phone()
    code = await send_code(client, app, phone, e164)
    await login(client, phone, code)
    async with db.read() as s:
        stored = (await s.execute(text("SELECT phone, phone_hash FROM accounts"))).one()
        code_hash = await s.scalar(text("SELECT code_hash FROM sms_codes"))
    assert phone not in stored.phone and phone not in stored.phone_hash
    assert code not in code_hash


async def test_failing_sms_gateway_is_a_503_problem(client, app):
    class Down:
        async def send(self, phone, template, params):
            raise ConnectionError("gateway down")

    app.state.sms = Down()
    phone, _ = new_phone()
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone})
    assert r.status_code == 503 and r.json()["code"] == "sms_unavailable"


async def test_logout_revokes_the_session_and_clears_the_cookie(client, app):
    phone, e164 = new_phone()
    token = (await login(client, phone, await send_code(client, app, phone, e164))).json()["token"]
    r = await client.post("/api/v1/auth/logout", headers=auth(token))
    assert r.status_code == 204
    assert f'{SESSION_COOKIE}=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    r = await client.get("/api/v1/me", headers=auth(token))
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"


async def test_me_needs_a_session(client):
    r = await client.get("/api/v1/me")
    assert r.status_code == 401 and r.json()["code"] == "unauthenticated"
    r = await client.get("/api/v1/me", headers=auth("made-up-token"))
    assert r.status_code == 401


async def test_locale_can_be_changed(client, app):
    phone, e164 = new_phone()
    token = (await login(client, phone, await send_code(client, app, phone, e164))).json()["token"]
    r = await client.patch("/api/v1/me", json={"locale": "en"}, headers=auth(token))
    assert r.status_code == 200 and r.json()["locale"] == "en"
    assert (await client.get("/api/v1/me", headers=auth(token))).json()["locale"] == "en"
    r = await client.patch("/api/v1/me", json={"locale": "fr"}, headers=auth(token))
    assert r.status_code == 422 and r.json()["code"] == "invalid_request"
