"""The demo on the simulated HIS: one hospital per mode, and `guahao serve` starting the
simulator beside itself when a hospital's connection points at it."""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import httpx
import pytest
from sqlalchemy import select

from guahao.catalog.models import Department, Doctor
from guahao.demo import data
from guahao.demo.seed import demo_id_number, run_seed
from guahao.his.client import HisClient
from guahao.his.sim.signing import platform_key
from tests.builders import auth, make_staff
from tests.his_records_support import fresh_his_clients  # noqa: F401 (fixture)
from tests.serve_support import Service, children_of, free_port, gone, listening, wait_until


async def test_the_demo_has_one_hospital_per_mode_connected_to_the_simulator(client, db, settings, clock):
    report = await run_seed(settings, if_empty=True, clock=clock, db=db, echo=lambda _: None)
    _, token = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    modes, pools = {}, {}
    for built in report.hospitals:
        r = await client.get(f"/api/v1/staff/hospitals/{built.id}", headers=auth(token))
        modes[r.json()["his_mode"]] = built
        c = await client.get(f"/api/v1/staff/hospitals/{built.id}/his-connection", headers=auth(token))
        if built.spec.his is None:
            assert c.status_code == 404
        else:
            assert c.status_code == 200 and c.json()["base_url"] == settings.his_sim_url
            pools[r.json()["his_mode"]] = c.json()["pool"]
    assert set(modes) == {"local", "synced", "realtime"}
    assert pools == {"synced": "guahao", "realtime": "shared"}
    for mode in ("synced", "realtime"):
        async with db.read() as s:
            depts = set(await s.scalars(select(Department.his_code).where(Department.hospital_id == modes[mode].id)))
            docs = set(await s.scalars(select(Doctor.his_code).where(Doctor.hospital_id == modes[mode].id)))
        assert {"NEI", "ERK"} <= depts and docs == {"D001", "D002", "D003"}
    requirements = set()
    for built in report.hospitals:
        r = await client.get(f"/api/v1/hospitals/{built.id}")
        requirements.add(r.json()["rules"]["record_requirement"])
    assert {"existing_record_required", "auto_create_in_his", "create_at_hospital", "none"} <= requirements


@pytest.fixture
def service(tmp_path):
    svc = Service(tmp_path, GUAHAO_HIS_SIM_URL=f"http://127.0.0.1:{free_port()}", GUAHAO_HIS_SIM_KEY="his-demo-test")
    svc.his_port = int(svc.env["GUAHAO_HIS_SIM_URL"].rsplit(":", 1)[1])
    svc.started = []
    yield svc
    svc.kill()
    for pid in svc.started:
        if not gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _run(service: Service, *args: str) -> None:
    proc = service.start(*args)
    assert proc.wait(timeout=180) == 0, service.output()


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


@pytest.mark.slow
def test_serve_starts_the_seeded_simulator_for_the_demo_and_stops_it(service):
    _run(service, "db", "upgrade")
    _run(service, "seed", "--demo", "--if-empty")
    proc = service.serve()
    service.wait_healthy()
    wait_until(lambda: listening(service.his_port), timeout=30, what="the HIS simulator", proc=proc, log=service.log)
    sims = [pid for pid in children_of(proc.pid) if "his-sim" in _cmdline(pid)]
    assert len(sims) == 1, service.output()
    service.started.append(sims[0])
    assert (service.directory / "his-sim.db").exists()

    url = service.env["GUAHAO_HIS_SIM_URL"]
    his = HisClient(url, "guahao", platform_key("his-demo-test", "guahao"), timeout=10)

    async def ask():
        try:
            person = data.DEMO_PATIENTS[0]
            record = await his.find_patient(demo_id_number(person), person.name)
            sessions = await his.availability(*_week())
            return record, sessions
        finally:
            await his.aclose()

    record, sessions = asyncio.run(ask())
    assert record is not None  # the demo patient holds the synced hospital's visit card
    assert sessions and {s.doctor_code for s in sessions} == {"D001", "D002", "D003"}
    assert httpx.get(f"{url}/healthz", timeout=2).status_code == 200

    service.stop(signal.SIGTERM)
    wait_until(lambda: gone(sims[0]), timeout=20, what="the simulator to end", log=service.log)
    assert not listening(service.his_port)


def _week():
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date()  # the simulator seeds from its (Shanghai) today
    return today - dt.timedelta(days=1), today + dt.timedelta(days=7)


@pytest.mark.slow
def test_serve_without_hospitals_on_the_simulator_starts_none(service):
    _run(service, "db", "upgrade")
    proc = service.serve()
    service.wait_healthy()
    assert not listening(service.his_port)
    assert not [pid for pid in children_of(proc.pid) if "his-sim" in _cmdline(pid)]
