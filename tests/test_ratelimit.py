"""Rate limits: SMS sending per number and per client address, staff login per username+client."""
from __future__ import annotations

import itertools

import httpx
import pytest

from guahao.core.errors import RateLimited
from guahao.core.ratelimit import RateLimiter
from guahao.staff import service as staff_service
from tests.builders import make_hospital
from tests.conftest import remember_sensitive

_numbers = itertools.count(1)


def new_phone() -> str:
    local = f"137{next(_numbers):08d}"
    remember_sensitive(local, f"+86{local}")
    return local


def client_from(app, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def send(client, phone: str) -> httpx.Response:
    return await client.post("/api/v1/auth/sms-codes", json={"phone": phone})


async def test_limiter_refuses_past_the_rule_with_retry_after():
    limiter = RateLimiter()
    await limiter.hit("2/minute", "k")
    await limiter.hit("2/minute", "k")
    with pytest.raises(RateLimited) as refused:
        await limiter.hit("2/minute", "k")
    assert 1 <= refused.value.params["retry_after"] <= 60
    await limiter.hit("2/minute", "another key")


async def test_sms_sending_is_limited_per_number(client, app):
    phone, other = new_phone(), new_phone()
    assert (await send(client, phone)).status_code == 202
    r = await send(client, f"+86{phone}")  # the same number written differently
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert r.headers["content-type"].startswith("application/problem+json")
    assert len(app.state.sms.sent) == 1
    assert (await send(client, other)).status_code == 202


async def test_sms_sending_is_limited_per_client_address(app):
    app.state.settings.sms_send_limit_per_client = "3/hour"
    async with client_from(app, "203.0.113.7") as busy, client_from(app, "198.51.100.2") as calm:
        for _ in range(3):
            assert (await send(busy, new_phone())).status_code == 202
        r = await send(busy, new_phone())
        assert r.status_code == 429 and r.json()["code"] == "rate_limited"
        assert int(r.headers["Retry-After"]) > 60  # an hourly window
        r = await send(busy, new_phone())
        assert "请" in r.json()["detail"] and "秒后再试" in r.json()["detail"]
        assert (await send(calm, new_phone())).status_code == 202


async def test_rate_limit_message_in_english(client):
    phone = new_phone()
    await send(client, phone)
    r = await client.post("/api/v1/auth/sms-codes", json={"phone": phone}, headers={"Accept-Language": "en"})
    assert r.status_code == 429 and "try again in" in r.json()["detail"]


async def test_staff_login_is_limited_per_username_and_client(app, db, clock):
    hospital = await make_hospital(db, clock.now())
    async with db.begin() as s:
        await staff_service.do_create_staff(s, username="desk.wang", password="correct horse battery",
                                            role="front_desk", hospital_id=hospital, display_name="王",
                                            now=clock.now())

    async def attempt(client, password: str) -> httpx.Response:
        return await client.post("/api/v1/staff/auth/login", json={"username": "desk.wang", "password": password})

    async with client_from(app, "203.0.113.9") as guesser, client_from(app, "198.51.100.3") as owner:
        for _ in range(5):
            assert (await attempt(guesser, "guess guess guess")).status_code == 401
        r = await attempt(guesser, "correct horse battery")
        assert r.status_code == 429 and r.json()["code"] == "rate_limited" and "Retry-After" in r.headers
        # the guesser does not lock the real user out from elsewhere
        assert (await attempt(owner, "correct horse battery")).status_code == 200
