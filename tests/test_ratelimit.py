"""Rate limits: SMS sending per number and per client address, staff login per username+client;
atomic under concurrency (memory and Redis), and a Redis outage degrades instead of failing."""
from __future__ import annotations

import asyncio
import itertools
import socket
import uuid

import httpx
import pytest
from structlog.testing import capture_logs

from guahao.app import create_app
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


REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_reachable() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def closed_port() -> int:
    """A local port nobody listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _concurrent_hits(limiter: RateLimiter, rule: str, key: str, n: int) -> int:
    async def one() -> bool:
        try:
            await limiter.hit(rule, "concurrency", key)
            return True
        except RateLimited:
            return False

    return sum(await asyncio.gather(*(one() for _ in range(n))))


@pytest.mark.skipif(not _redis_reachable(), reason="Redis not reachable at 127.0.0.1:6379")
async def test_redis_limit_lets_exactly_one_of_twenty_concurrent_hits_through():
    # the old test-then-hit let 19 of 20 through: every request tested before any counted
    limiter = RateLimiter(REDIS_URL)
    assert await _concurrent_hits(limiter, "1/minute", uuid.uuid4().hex, 20) == 1
    # a second process (another limiter on the same Redis) shares the count
    assert await _concurrent_hits(RateLimiter(REDIS_URL), "1/minute", uuid.uuid4().hex, 1) == 1


@pytest.mark.skipif(not _redis_reachable(), reason="Redis not reachable at 127.0.0.1:6379")
async def test_redis_limit_is_shared_between_limiters():
    key = uuid.uuid4().hex
    first, second = RateLimiter(REDIS_URL), RateLimiter(REDIS_URL)
    await first.hit("1/minute", "shared", key)
    with pytest.raises(RateLimited):
        await second.hit("1/minute", "shared", key)


async def test_memory_limit_lets_exactly_three_of_twenty_concurrent_hits_through():
    assert await _concurrent_hits(RateLimiter(), "3/minute", "k", 20) == 3


async def test_redis_outage_degrades_to_process_limits_with_one_warning():
    moments = [1000.0]
    limiter = RateLimiter(f"redis://127.0.0.1:{closed_port()}/0", retry_seconds=30, monotonic=lambda: moments[0])
    with capture_logs() as logs:
        assert await _concurrent_hits(limiter, "2/minute", "k", 10) == 2  # still limited, per process
        with pytest.raises(RateLimited) as refused:
            await limiter.hit("2/minute", "concurrency", "k")
        assert refused.value.params["retry_after"] >= 1
        moments[0] += 31  # past retry_seconds: Redis is tried again (still down), no new warning
        with pytest.raises(RateLimited):
            await limiter.hit("2/minute", "concurrency", "k")
    assert limiter.degraded
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [e["event"] for e in warnings] == ["rate_limit_redis_unavailable"]
    assert any(e["event"] == "rate_limit_redis_retry" for e in logs)


async def test_sms_codes_still_answer_when_redis_is_down(settings, clock):
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    application = create_app(down, clock=clock)
    try:
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            phone = new_phone()
            assert (await send(c, phone)).status_code == 202
            r = await send(c, phone)
            assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    finally:
        await application.state.db.dispose()


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
        for _ in range(4):
            assert (await attempt(guesser, "guess guess guess")).status_code == 401
        assert (await attempt(owner, "correct horse battery")).status_code == 200  # resets the lockout count
        assert (await attempt(guesser, "guess guess guess")).status_code == 401
        r = await attempt(guesser, "correct horse battery")
        assert r.status_code == 429 and r.json()["code"] == "rate_limited" and "Retry-After" in r.headers
        # the per-address limit does not shut the owner out (the lockout, five failures, would:
        # test_staff_lockout.py)
        assert (await attempt(owner, "correct horse battery")).status_code == 200


def test_local_windows_move_and_forget_keys_whose_window_passed():
    """The in-process windows are exact moving windows, and keys that went quiet are dropped
    (a release rush makes a key per token, account and patient)."""
    from limits import parse

    from guahao.core.ratelimit import LocalWindows

    moment = [100.0]
    windows = LocalWindows(monotonic=lambda: moment[0])
    rule = parse("2/minute")
    assert windows.hit(rule, ("a",)) is None
    moment[0] += 30
    assert windows.hit(rule, ("a",)) is None
    assert windows.hit(rule, ("a",)) == 30  # the first hit leaves the window 30 s from now
    moment[0] += 30.5  # the first hit has left, the second has not
    assert windows.hit(rule, ("a",)) is None
    assert windows.hit(rule, ("a",)) == 30
    for i in range(LocalWindows.SWEEP_EVERY):
        windows.hit(rule, (f"patient-{i}",))
    assert len(windows) == LocalWindows.SWEEP_EVERY + 1
    moment[0] += 61
    for i in range(LocalWindows.SWEEP_EVERY):  # a new wave: the sweep drops every quiet key
        windows.hit(rule, (f"later-{i}",))
    assert len(windows) <= LocalWindows.SWEEP_EVERY
