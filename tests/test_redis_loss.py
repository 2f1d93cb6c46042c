"""Redis lost in the middle of a rush (issue 12): the sold-out gate and the rate limits fall
back to per-process memory, nothing answers 5xx, the seats are sold exactly once, and when
Redis comes back the gate uses it again. Redis here is a private `redis-server` the test
starts and kills (never the machine's shared one)."""
from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import func, select

from guahao.app import create_app
from guahao.bench.servers import free_port
from guahao.booking.models import LIVE_STATES, Booking
from guahao.ops.invariants import check_all
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.conftest import _wipe

SEATS = 10
PATIENTS = 80


@pytest.fixture
def private_redis():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server not installed (Debian: redis-server)")
    port, folder = free_port(), tempfile.mkdtemp(prefix="guahao-redis-")

    def start() -> subprocess.Popen:
        proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", folder],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                import time

                time.sleep(0.05)
        client.close()
        return proc

    server = {"proc": start(), "url": f"redis://127.0.0.1:{port}/0", "start": start}
    yield server
    server["proc"].kill()
    server["proc"].wait()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def app(settings, clock, private_redis):
    application = create_app(settings.model_copy(update={"redis_url": private_redis["url"],
                                                         "run_jobs_in_process": False}), clock=clock)
    await _wipe(application.state.db)
    yield application
    await application.state.db.dispose()


async def test_losing_redis_mid_rush_changes_nothing_patients_can_see(app, db, clock, private_redis):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                   day=now.date() + dt.timedelta(days=2), capacity=SEATS)
    people = []
    for _ in range(PATIENTS):
        account, token = await make_account(db, now)
        people.append((token, await make_patient(db, now, account)))

    def hold(client, token, patient):
        return client.post("/api/v1/bookings", json={"slot_id": slots[0], "patient_id": patient},
                           headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        before = await asyncio.gather(*[hold(client, t, p) for t, p in people[:20]])
        private_redis["proc"].kill()  # gone, mid-rush: no goodbye
        private_redis["proc"].wait()
        during = await asyncio.gather(*[hold(client, t, p) for t, p in people[20:60]])
        # and an SMS code request still works (rate limits fall back to memory)
        sms = await client.post("/api/v1/auth/sms-codes", json={"phone": "13700137000"})
        private_redis["proc"] = private_redis["start"]()  # back
        after = await asyncio.gather(*[hold(client, t, p) for t, p in people[60:]])
    answers = before + during + after
    codes = Counter(r.status_code for r in answers)
    assert set(codes) <= {201, 409}, codes
    assert codes[201] == SEATS
    assert all(r.json()["code"] == "slot_sold_out" for r in answers if r.status_code == 409)
    assert sms.status_code in (200, 201, 202), sms.text
    async with db.read() as s:
        live = await s.scalar(select(func.count()).select_from(Booking).where(Booking.state.in_(LIVE_STATES)))
    assert live == SEATS
    assert await check_all(db, now=clock.now()) == []
    # the gate shares "full" through Redis again once it is back
    import redis.asyncio as aioredis

    back = aioredis.from_url(private_redis["url"])
    try:
        await app.state.gate.mark_full(slots[0])
        assert await back.exists(f"guahao:full:{slots[0]}") == 1
    finally:
        await back.aclose()
