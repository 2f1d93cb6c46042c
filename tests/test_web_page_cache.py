"""The doctor and department pages under the poll storm (web/shared_pages.py): made once per
view and version of what they show, yet never staler than the availability API (a commit in
this process at once, another process's within 1 s of the injected clock), each visitor with
their own CSRF token, in their own language. No wall clock anywhere."""
from __future__ import annotations

import datetime as dt
import re
import uuid
from contextlib import asynccontextmanager

import httpx
import jinja2
import pytest
from sqlalchemy import update

from guahao.catalog import router as catalog_api
from guahao.catalog.models import Doctor
from guahao.core import signing
from guahao.core.deps import SESSION_COOKIE
from guahao.scheduling import avail_cache, availability
from guahao.scheduling.models import Slot
from guahao.web import catalog_pages, pages, shared_pages
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

pytestmark = pytest.mark.timeout(120)
DAY = dt.date(2026, 11, 21)
TOKEN = re.compile(r'"X-CSRF-Token": "([^"]*)"')


@pytest.fixture(autouse=True)
def _fresh_cache():
    avail_cache.invalidate()
    yield
    avail_cache.configure(1.0)


@asynccontextmanager
async def _visitor(app, language: str = "zh-CN", cookies: dict | None = None):
    """A browser of its own: its own cookies (CSRF nonce, maybe a login), its own language."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", cookies=cookies or {},
                                 headers={"Accept": "text/html", "Accept-Language": language}) as c:
        yield c


async def _world(db, now, **schedule):
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep, name="张伟")
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY,
                                   capacity=3, **schedule)
    return dep, doc, slots[0]


def _left(html: str, slot: int) -> int:
    """The remaining count a page shows for a slot (zh-CN "余 N", en "N left")."""
    block = re.search(rf'data-slot="{slot}".*?</div>', html, re.S).group(0)
    found = re.search(r"余 (\d+)|(\d+) left", block)
    return int(found.group(1) or found.group(2))


async def _api_left(client, doc: int, slot: int) -> int:
    answer = (await client.get(f"/api/v1/doctors/{doc}/availability")).json()
    return next(sl["remaining"] for d in answer["days"] for p in d["periods"] for s in p["schedules"]
                for sl in s["slots"] if sl["slot_id"] == slot)


async def _answer(db, doc: int, now: dt.datetime):
    """The doctor page's availability answer (the API's own function and cache)."""
    async with db.read() as s:
        return await availability.doctor_availability(s, doc, now=now, days=catalog_pages.CALENDAR_DAYS)


@pytest.fixture
def renders(monkeypatch):
    """How many times a template was rendered, by name."""
    counted: dict[str, int] = {}
    original = jinja2.Template.render

    def counting(self, *args, **kwargs):
        counted[self.name] = counted.get(self.name, 0) + 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(jinja2.Template, "render", counting)
    return counted


async def test_a_hold_and_a_cancellation_committed_here_show_at_once(app, client, db, clock, renders, monkeypatch):
    now = clock.now()
    dep, doc, slot = await _world(db, now)
    reads = {"doctor": 0}
    original = catalog_api.get_doctor

    async def counting(*args, **kwargs):
        reads["doctor"] += 1
        return await original(*args, **kwargs)

    monkeypatch.setattr(catalog_api, "get_doctor", counting)
    async with _visitor(app) as browser:
        polls = [await browser.get(f"/doctors/{doc}", params={"day": DAY.isoformat()}) for _ in range(5)]
        assert {_left(p.text, slot) for p in polls} == {3}
        assert renders["catalog/doctor.html"] == 1 and reads["doctor"] == 1  # one of each for five polls
        account, token = await make_account(db, now)
        patient = await make_patient(db, now, account)
        held = await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                                 headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
        assert held.status_code == 201, held.text
        # the same instant of the injected clock: only the invalidation can explain the new count
        assert _left((await browser.get(f"/doctors/{doc}", params={"day": DAY.isoformat()})).text, slot) == 2
        assert _left((await browser.get(f"/departments/{dep}", params={"day": DAY.isoformat()})).text, slot) == 2
        assert await _api_left(client, doc, slot) == 2
        cancelled = await client.post(f"/api/v1/bookings/{held.json()['id']}/cancel", json={},
                                      headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
        assert cancelled.status_code == 200, cancelled.text
        assert _left((await browser.get(f"/doctors/{doc}", params={"day": DAY.isoformat()})).text, slot) == 3
        assert _left((await browser.get(f"/departments/{dep}", params={"day": DAY.isoformat()})).text, slot) == 3
        assert renders["catalog/doctor.html"] == 3


async def test_a_write_elsewhere_shows_when_the_api_shows_it(app, client, db, clock):
    """Another worker process's hold: nothing here can know, the page follows the API's answer,
    at most 1 s late. Simulated with a statement on a bare connection (no session, no invalidation)."""
    now = clock.now()
    dep, doc, slot = await _world(db, now)
    async with _visitor(app) as browser:
        page = f"/doctors/{doc}?day={DAY.isoformat()}"
        assert _left((await browser.get(page)).text, slot) == 3
        assert await _api_left(client, doc, slot) == 3  # both seen before the write
        async with db.engine.begin() as conn:
            await conn.execute(update(Slot).where(Slot.id == slot).values(capacity=2))
        for ms, expected in ((0, 3), (999, 3), (1000, 2), (1500, 2)):
            clock.set(now + dt.timedelta(milliseconds=ms))
            assert _left((await browser.get(page)).text, slot) == expected, ms
            assert await _api_left(client, doc, slot) == expected, ms
        department = (await browser.get(f"/departments/{dep}", params={"day": DAY.isoformat()})).text
        assert _left(department, slot) == 2


async def test_the_catalogue_follows_the_same_rule(app, db, clock):
    now = clock.now()
    _, doc, _ = await _world(db, now)
    async with _visitor(app) as browser:
        assert "张伟" in (await browser.get(f"/doctors/{doc}")).text
        async with db.begin() as s:  # committed in this process: seen at once
            await s.execute(update(Doctor).where(Doctor.id == doc).values(name="李娜"))
        assert "李娜" in (await browser.get(f"/doctors/{doc}")).text
        async with db.engine.begin() as conn:  # another process: within 1 s
            await conn.execute(update(Doctor).where(Doctor.id == doc).values(name="王芳"))
        clock.set(now + dt.timedelta(milliseconds=999))
        assert "李娜" in (await browser.get(f"/doctors/{doc}")).text
        clock.set(now + dt.timedelta(seconds=1))
        assert "王芳" in (await browser.get(f"/doctors/{doc}")).text


async def test_each_visitor_gets_their_own_token_on_a_shared_page(app, db, clock, renders):
    now = clock.now()
    dep, doc, _ = await _world(db, now)
    _, token = await make_account(db, now)
    mine, theirs = "a" * 32, "b" * 32
    async with (_visitor(app, cookies={pages.CSRF_COOKIE: mine, SESSION_COOKIE: token}) as logged_in,
                _visitor(app, cookies={pages.CSRF_COOKIE: theirs}) as anonymous,
                _visitor(app) as newcomer):
        for path in (f"/doctors/{doc}", f"/departments/{dep}"):
            a, b, c = [await v.get(path) for v in (logged_in, anonymous, newcomer)]
            assert TOKEN.search(a.text).group(1) == signing.csrf_token(mine)
            assert TOKEN.search(b.text).group(1) == signing.csrf_token(theirs)
            assert signing.csrf_token(mine) not in b.text and signing.csrf_token(theirs) not in a.text
            # a browser without a CSRF cookie is given one, and the page carries that one's token
            assert TOKEN.search(c.text).group(1) == signing.csrf_token(newcomer.cookies[pages.CSRF_COOKIE])
            assert all(shared_pages.PLACEHOLDER not in r.text for r in (a, b, c))
            assert all(r.headers["cache-control"] == "no-store" for r in (a, b, c))
    assert renders["catalog/doctor.html"] == renders["catalog/department.html"] == 1  # shared by all three


async def test_a_shared_page_refuses_what_differs_between_visitors(app, db, clock, monkeypatch):
    """Were a template of these pages to show the account menu, the cache would show one
    visitor's to the next: it fails instead of guessing."""
    now = clock.now()
    _, doc, _ = await _world(db, now)
    menu = '{% extends "base.html" %}{% block content %}{% if logged_in %}my bookings{% endif %}{% endblock %}'
    monkeypatch.setattr(pages.env, "loader", jinja2.ChoiceLoader([jinja2.DictLoader({"catalog/doctor.html": menu}),
                                                                  pages.env.loader]))
    pages.env.cache.clear()
    try:
        async with _visitor(app) as browser:
            assert (await browser.get(f"/doctors/{doc}")).status_code == 500
    finally:
        pages.env.cache.clear()


async def test_language_and_elderly_mode_are_each_visitors_own(app, db, clock, renders):
    now = clock.now()
    _, doc, slot = await _world(db, now)
    page = f"/doctors/{doc}?day={DAY.isoformat()}"
    async with (_visitor(app, "zh-CN") as zh, _visitor(app, "en") as en,
                _visitor(app, "en", cookies={pages.ELDER_COOKIE: "1"}) as elder):
        for _ in range(2):
            a, b, c = [await v.get(page) for v in (zh, en, elder)]
            assert '<html lang="zh-CN">' in a.text and "余 3" in a.text and a.headers["content-language"] == "zh-CN"
            assert '<html lang="en">' in b.text and "3 left" in b.text and b.headers["content-language"] == "en"
            assert '<body class="elder"' in c.text and '<body class="elder"' not in b.text
            assert _left(c.text, slot) == 3
    assert renders["catalog/doctor.html"] == 3  # one per language and mode, not per poll


async def test_the_countdown_is_the_callers_second_not_the_kept_pages(app, client, db, clock, renders):
    now = clock.now()
    _, doc, slot = await _world(db, now, release_at=now + dt.timedelta(hours=2))
    async with _visitor(app) as browser:
        page = f"/doctors/{doc}?day={DAY.isoformat()}"
        assert 'data-countdown="7200"' in (await browser.get(page)).text
        answer = await _answer(db, doc, now)
        clock.set(now + dt.timedelta(milliseconds=500))
        assert await _answer(db, doc, clock.now()) is answer  # the answer is still the same one
        assert 'data-countdown="7199"' in (await browser.get(page)).text
        assert 'data-countdown="7199"' in (await browser.get(page)).text
        assert renders["catalog/doctor.html"] == 2
        clock.set(now + dt.timedelta(hours=2))  # released: the page shows the seats on time
        opened = (await browser.get(page)).text
        assert "data-countdown" not in opened and _left(opened, slot) == 3
