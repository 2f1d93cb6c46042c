"""An API worker SIGKILLed in the middle of a rush (issue 12, 服务器故障): uvicorn with two
worker processes on PostgreSQL, 120 patients holding 30 seats; both workers are killed while
requests are in flight, and uvicorn's supervisor starts new ones. Patients whose connection died retry with the same Idempotency-Key
(as the app does); every one of them ends with a final answer, the 201s are exactly the live
bookings, the invariant audit passes, and /readyz answers again once the new workers are up."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from guahao.bench.servers import UvicornServer
from guahao.booking.models import LIVE_STATES, Booking
from guahao.core.db import create_database
from guahao.ops.invariants import check_all
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital
from tests.conftest import TEST_DATA_KEY, TEST_INDEX_KEY, TEST_SECRET_KEY
from tests.test_booking_http_rush import pg_url  # noqa: F401 (fixture: a scratch PostgreSQL database)

pytestmark = pytest.mark.timeout(300)
PATIENTS, SEATS = 120, 30


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry.name))
    return kids


async def test_a_killed_api_worker_loses_nothing_acknowledged(pg_url, tmp_path):
    server = UvicornServer("guahao.asgi:app", workers=2, name="guahao", log_dir=tmp_path, env={
        "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": pg_url, "GUAHAO_DATA_KEY": TEST_DATA_KEY,
        "GUAHAO_INDEX_KEY": TEST_INDEX_KEY, "GUAHAO_SECRET_KEY": TEST_SECRET_KEY,
        "GUAHAO_RUN_JOBS_IN_PROCESS": "false", "GUAHAO_SMS_PROVIDER": "recording", "GUAHAO_REDIS_URL": ""})
    server.start()
    db = create_database(pg_url, pool_size=2)
    try:
        now = dt.datetime.now(dt.UTC)
        hid = await make_hospital(db, now)
        dep = await make_department(db, hid)
        doc = await make_doctor(db, hid, dep)
        _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                       day=(now + dt.timedelta(days=3)).date(), capacity=SEATS)
        people = []
        for _ in range(PATIENTS):
            account, token = await make_account(db, now)
            people.append((token, await make_patient(db, now, account), uuid.uuid4().hex))
        await server.wait_ready()
        workers = []
        for _ in range(100):  # both workers up
            workers = _children(server.proc.pid)
            if len(workers) >= 2:
                break
            await asyncio.sleep(0.1)
        assert len(workers) >= 2, workers
        final: dict[str, tuple[int, dict]] = {}
        broken = ready = 0
        ready_codes: set[int] = set()
        # a fresh connection per request, so requests spread over both workers
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
            async def patient(token, pid, key) -> None:
                nonlocal broken
                for _ in range(100):
                    try:
                        r = await client.post("/api/v1/bookings", json={"slot_id": slots[0], "patient_id": pid},
                                              headers={**auth(token), "Idempotency-Key": key})
                    except httpx.TransportError:
                        broken += 1  # the worker died under this request: retry the same request
                        await asyncio.sleep(0.1)
                        continue
                    if r.status_code < 500:
                        final[key] = (r.status_code, r.json())
                        return
                    await asyncio.sleep(0.1)

            async def killer() -> None:
                while len(final) < 10:  # the rush is under way
                    await asyncio.sleep(0.005)
                for pid in workers:  # every worker at once: requests are surely in flight;
                    os.kill(pid, signal.SIGKILL)  # uvicorn's supervisor starts new ones

            async def watch() -> None:
                nonlocal ready
                for _ in range(50):
                    try:
                        ready_codes.add((await client.get("/readyz")).status_code)
                        ready += 1
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)

            await asyncio.gather(killer(), watch(), *(patient(t, p, k) for t, p, k in people))
        assert len(final) == PATIENTS, f"{PATIENTS - len(final)} patients without a final answer"
        assert {s for s, _ in final.values()} <= {201, 409}
        booked = {b["id"] for s, b in final.values() if s == 201}
        async with db.read() as s:
            live = set(await s.scalars(select(Booking.id).where(Booking.state.in_(LIVE_STATES))))
        assert live == booked and len(booked) == SEATS
        assert await check_all(db, now=dt.datetime.now(dt.UTC)) == []
        assert broken > 0, "the kill hit no request in flight"
        assert ready_codes == {200} and ready > 0
    finally:
        server.stop()
        await db.dispose()
