"""The last-slot race through a real server: uvicorn with 2 worker processes on PostgreSQL,
200 concurrent holds over HTTP for 5 seats (I1, I2 across processes, no 5xx under load).

The in-process version (both databases) is in test_booking_race.py; this one proves the same
outcome when the claimants land on different processes with their own pools and gates.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from guahao import migrations_api
from guahao.bench.servers import ScratchPostgres, UvicornServer
from guahao.booking.models import LIVE_STATES, Booking
from guahao.core.db import create_database
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.conftest import PG_ADMIN_URL, TEST_DATA_KEY, TEST_INDEX_KEY, TEST_SECRET_KEY, _pg_reachable

CLIENTS = 200
CAPACITY = 5


@pytest.fixture
async def pg_url():
    problem = await _pg_reachable()
    if problem:
        message = f"PostgreSQL half skipped: not reachable at {PG_ADMIN_URL} ({problem})"
        if os.environ.get("GUAHAO_REQUIRE_POSTGRES") == "1":
            pytest.fail(message + " and GUAHAO_REQUIRE_POSTGRES=1")
        pytest.skip(message)
    scratch = ScratchPostgres("guahao_test_http", PG_ADMIN_URL)
    url = await scratch.create()
    try:
        await asyncio.to_thread(migrations_api.upgrade, url)
        yield url
    finally:
        await scratch.drop()


@pytest.fixture
def server(pg_url, tmp_path):
    srv = UvicornServer("guahao.asgi:app", workers=2, name="guahao", log_dir=tmp_path, env={
        "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": pg_url, "GUAHAO_DATA_KEY": TEST_DATA_KEY,
        "GUAHAO_INDEX_KEY": TEST_INDEX_KEY, "GUAHAO_SECRET_KEY": TEST_SECRET_KEY,
        "GUAHAO_RUN_JOBS_IN_PROCESS": "false", "GUAHAO_SMS_PROVIDER": "recording", "GUAHAO_REDIS_URL": "",
    })
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()  # the whole process group, whatever happened


async def test_last_slot_race_over_http_two_worker_processes(pg_url, server):
    db = create_database(pg_url, pool_size=5)
    try:
        now = dt.datetime.now(dt.UTC)
        hid = await make_hospital(db, now)
        dep = await make_department(db, hid)
        doc = await make_doctor(db, hid, dep)
        day = (now + dt.timedelta(days=3)).date()
        _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=day,
                                       capacity=CAPACITY)
        clients = []
        for _ in range(CLIENTS):
            account_id, token = await make_account(db, now)
            clients.append((token, await make_patient(db, now, account_id)))
        await server.wait_ready()

        limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
        async with httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=30.0) as client:
            answers = await asyncio.gather(*(
                client.post("/api/v1/bookings", json={"slot_id": slots[0], "patient_id": patient},
                            headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
                for token, patient in clients))

        assert not [r for r in answers if r.status_code >= 500], server.log_tail()
        codes = Counter(r.status_code if r.status_code == 201 else (r.status_code, r.json().get("code"))
                        for r in answers)
        assert codes == {201: CAPACITY, (409, "slot_sold_out"): CLIENTS - CAPACITY}, codes
        visit_nos = sorted(r.json()["visit_no"] for r in answers if r.status_code == 201)
        assert visit_nos == list(range(1, CAPACITY + 1))
        async with db.read() as s:
            live = await s.scalar(select(func.count()).select_from(Booking)
                                  .where(Booking.slot_id == slots[0], Booking.state.in_(LIVE_STATES)))
        assert live == CAPACITY
    finally:
        await db.dispose()
