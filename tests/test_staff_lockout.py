"""Staff login lockout: five wrong passwords in 15 minutes lock a username for 15 minutes,
from every address, counted in the database (so across processes), audited, and exact under
concurrent guessing."""
from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from guahao.core.audit import AuditEntry
from guahao.staff import service as staff_service
from guahao.staff.models import StaffLoginThrottle
from tests.builders import make_hospital

PASSWORD = "correct horse battery"


def client_from(app, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def make_desk(db, now, username: str = "desk.li") -> tuple[int, int]:
    hospital = await make_hospital(db, now)
    async with db.begin() as s:
        user = await staff_service.do_create_staff(s, username=username, password=PASSWORD, role="front_desk",
                                                   hospital_id=hospital, display_name="李", now=now)
        return user.id, hospital


async def login(app, password: str, *, host: str = "198.51.100.1", username: str = "desk.li",
                lang: str | None = None) -> httpx.Response:
    headers = {"Accept-Language": lang} if lang else {}
    async with client_from(app, host) as c:
        return await c.post("/api/v1/staff/auth/login", json={"username": username, "password": password},
                            headers=headers)


async def test_twenty_concurrent_guesses_get_five_password_checks(app, db, clock):
    staff_id, hospital = await make_desk(db, clock.now())
    # twenty addresses at once, so the per-address limit stays out of the way
    answers = await asyncio.gather(*(login(app, f"guess number {i:02d}", host=f"203.0.113.{i + 1}")
                                     for i in range(20)))
    codes = sorted(r.json()["code"] for r in answers)
    assert codes.count("invalid_credentials") == 5 and codes.count("login_locked") == 15, codes

    r = await login(app, PASSWORD, host="192.0.2.200")  # the owner, elsewhere: locked too
    assert r.status_code == 429 and r.json()["code"] == "login_locked"
    assert 14 * 60 <= int(r.headers["Retry-After"]) <= 15 * 60
    assert "分钟后再试" in r.json()["detail"]
    assert "minutes" in (await login(app, PASSWORD, lang="en")).json()["detail"]

    async with db.read() as s:
        entries = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "staff.login_locked")))
    assert len(entries) == 1
    assert entries[0].hospital_id == hospital and entries[0].staff_id is None
    assert f'"locked_staff_id":{staff_id}' in entries[0].detail

    clock.advance(minutes=15, seconds=1)
    assert (await login(app, PASSWORD)).status_code == 200
    async with db.read() as s:
        assert await s.get(StaffLoginThrottle, "desk.li") is None  # success forgets the failures


async def test_a_correct_password_resets_the_count(app, db, clock):
    await make_desk(db, clock.now())
    for i in range(4):
        assert (await login(app, "wrong password", host=f"203.0.113.{i + 1}")).status_code == 401
    assert (await login(app, PASSWORD)).status_code == 200
    for i in range(4):
        assert (await login(app, "wrong password", host=f"203.0.113.{i + 10}")).status_code == 401
    assert (await login(app, PASSWORD)).status_code == 200


async def test_failures_spread_over_more_than_the_window_do_not_lock(app, db, clock):
    await make_desk(db, clock.now())
    for i in range(4):
        assert (await login(app, "wrong password", host=f"203.0.113.{i + 1}")).status_code == 401
    clock.advance(minutes=15, seconds=1)
    for i in range(4):
        assert (await login(app, "wrong password", host=f"203.0.113.{i + 10}")).status_code == 401
    assert (await login(app, PASSWORD)).status_code == 200


async def test_unknown_usernames_lock_the_same_way(app, db, clock):
    """The lockout answer must not tell which usernames exist."""
    await make_desk(db, clock.now())
    for name in ("desk.li", "nobody.here"):
        codes = [(await login(app, "wrong password", username=name, host=f"203.0.113.{i + 1}")).json()["code"]
                 for i in range(6)]
        assert codes == ["invalid_credentials"] * 5 + ["login_locked"], (name, codes)
    async with db.read() as s:
        entries = list(await s.scalars(select(AuditEntry).where(AuditEntry.action == "staff.login_locked")))
    assert sorted(e.object_id for e in entries) == ["desk.li", "nobody.here"]


async def test_the_policy_comes_from_settings(app, db, clock):
    app.state.settings.staff_login_max_failures = 2
    app.state.settings.staff_login_lock_minutes = 1
    await make_desk(db, clock.now())
    codes = [(await login(app, "wrong password", host=f"203.0.113.{i + 1}")).json()["code"] for i in range(3)]
    assert codes == ["invalid_credentials", "invalid_credentials", "login_locked"]
    clock.advance(minutes=1, seconds=1)
    assert (await login(app, PASSWORD)).status_code == 200
