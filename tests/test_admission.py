"""Admission control (core/admission.py): past a route class's bound, an immediate 503 with
Retry-After; the requests already admitted finish; other classes and payment callbacks are
not affected; and, through a real server under a storm of holds, nothing acknowledged is lost
and nothing refused is booked."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from guahao.bench.servers import UvicornServer
from guahao.booking.models import LIVE_STATES, Booking
from guahao.core.admission import AdmissionMiddleware, parse_limits, route_class
from guahao.core.db import create_database
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.conftest import TEST_DATA_KEY, TEST_INDEX_KEY, TEST_SECRET_KEY
from tests.test_booking_http_rush import pg_url  # noqa: F401  (fixture: a scratch PostgreSQL database)


def test_route_classes_and_limits():
    assert route_class("POST", "/api/v1/bookings") == "hold"
    assert route_class("POST", "/book/12") == "hold"
    assert route_class("GET", "/api/v1/bookings") == "api"
    assert route_class("POST", "/api/v1/staff/bookings/3/void") == "staff"
    assert route_class("GET", "/staff/window") == "staff"
    assert route_class("GET", "/hospitals/3") == "page"
    for free in ("/healthz", "/readyz", "/metrics", "/static/web/web.css", "/api/v1/payments/notify/wechat"):
        assert route_class("POST", free) is None
    assert parse_limits("hold=5, api=7") == {"hold": 5, "api": 7}
    for bad in ("hold=0", "hold=x", "queue=3"):
        with pytest.raises(ValueError):
            parse_limits(bad)


async def test_past_the_bound_answers_at_once_and_admitted_requests_finish():
    release = asyncio.Event()
    entered = 0

    async def slow(request):
        nonlocal entered
        entered += 1
        await release.wait()
        return PlainTextResponse("done")

    inner = Starlette(routes=[Route("/api/v1/bookings", slow, methods=["POST"]),
                              Route("/api/v1/staff/me", slow), Route("/api/v1/payments/notify/x", slow,
                                                                       methods=["POST"])])
    app = AdmissionMiddleware(inner, limits={"hold": 5, "staff": 2})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        holds = [asyncio.create_task(client.post("/api/v1/bookings", headers={"accept-language": "zh-CN"}))
                 for _ in range(20)]
        staff = asyncio.create_task(client.get("/api/v1/staff/me"))
        callbacks = [asyncio.create_task(client.post("/api/v1/payments/notify/x")) for _ in range(10)]
        while entered < 5 + 1 + 10:  # the admitted ones are in their handlers
            await asyncio.sleep(0.01)
        refused = [t for t in holds if t.done()]
        assert len(refused) == 15  # answered while the five admitted were still running
        for task in refused:
            answer = task.result()
            assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
            assert answer.json()["code"] == "overloaded" and "请" in answer.json()["detail"]
        release.set()
        done = await asyncio.gather(*holds, staff, *callbacks)
        assert Counter(r.status_code for r in done) == {200: 5 + 1 + 10, 503: 15}
        again = await client.post("/api/v1/bookings")  # the class emptied: admitted again
        assert again.status_code == 200


@pytest.fixture
def small_server(pg_url, tmp_path):
    srv = UvicornServer("guahao.asgi:app", workers=1, name="guahao", log_dir=tmp_path, env={
        "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": pg_url, "GUAHAO_DATA_KEY": TEST_DATA_KEY,
        "GUAHAO_INDEX_KEY": TEST_INDEX_KEY, "GUAHAO_SECRET_KEY": TEST_SECRET_KEY,
        "GUAHAO_RUN_JOBS_IN_PROCESS": "false", "GUAHAO_SMS_PROVIDER": "recording", "GUAHAO_REDIS_URL": "",
        "GUAHAO_ADMISSION_LIMITS": "hold=4", "GUAHAO_DB_POOL_SIZE": "2",
    })
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


async def test_a_hold_storm_past_the_bound_loses_nothing(pg_url, small_server):
    """150 holds at once on a process admitting 4 at a time, for 20 seats: refusals are 503s
    with Retry-After, never 500s or timeouts; every 201 is a live booking, and the database has
    no booking that was not acknowledged."""
    db = create_database(pg_url, pool_size=2)
    try:
        now = dt.datetime.now(dt.UTC)
        hid = await make_hospital(db, now)
        dep = await make_department(db, hid)
        doc = await make_doctor(db, hid, dep)
        _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                       day=(now + dt.timedelta(days=3)).date(), capacity=20)
        clients = []
        for _ in range(150):
            account_id, token = await make_account(db, now)
            clients.append((token, await make_patient(db, now, account_id)))
        await small_server.wait_ready()
        limits = httpx.Limits(max_connections=150, max_keepalive_connections=150)
        async with httpx.AsyncClient(base_url=small_server.base_url, limits=limits, timeout=30.0) as client:
            answers = await asyncio.gather(*(
                client.post("/api/v1/bookings", json={"slot_id": slots[0], "patient_id": patient},
                            headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
                for token, patient in clients))
            health = await client.get("/readyz")
        codes = Counter(r.status_code for r in answers)
        assert set(codes) <= {201, 409, 503}, (codes, small_server.log_tail())
        assert codes[503] > 0, codes  # the bound was reached
        assert all(r.headers.get("retry-after") for r in answers if r.status_code == 503)
        assert health.status_code == 200
        acknowledged = {r.json()["id"] for r in answers if r.status_code == 201}
        async with db.read() as s:
            live = set(await s.scalars(select(Booking.id).where(Booking.slot_id == slots[0],
                                                               Booking.state.in_(LIVE_STATES))))
        assert live == acknowledged
    finally:
        await db.dispose()
