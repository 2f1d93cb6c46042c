"""Maintenance mode (core/maintenance.py, staff/maintenance.py): the operator's switch and the
deploy file; patients get 503 with the expected end and Retry-After in their language, a page
in a browser; staff, payment callbacks, health checks and the jobs keep working; a request in
flight when the switch turns on finishes; every process follows within the cache interval."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import select

from guahao.core.audit import AuditEntry
from guahao.staff import maintenance
from tests.builders import auth, make_account, make_staff


async def _operator(db, clock) -> dict:
    _sid, token = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    return auth(token)


async def test_the_operator_switches_it_on_and_off_and_patients_see_the_expected_end(client, db, clock):
    operator = await _operator(db, clock)
    _aid, patient_token = await make_account(db, clock.now())
    patient = auth(patient_token)
    assert (await client.get("/api/v1/hospitals")).status_code == 200

    until = clock.now() + dt.timedelta(hours=1)
    r = await client.put("/api/v1/staff/maintenance", headers=operator,
                         json={"active": True, "until": until.isoformat(), "note": "数据库升级"})
    assert r.status_code == 200 and r.json()["active"] is True and r.json()["source"] == "operator"

    zh = await client.get("/api/v1/hospitals", headers={"accept-language": "zh-CN"})
    assert zh.status_code == 503 and zh.json()["code"] == "maintenance"
    assert "预计11月19日 11:00(北京时间)恢复" in zh.json()["detail"] and "数据库升级" in zh.json()["detail"]
    assert int(zh.headers["retry-after"]) == 3600
    en = await client.post("/api/v1/bookings", headers={**patient, "accept-language": "en", "Idempotency-Key": "k1"},
                           json={"slot_id": 1, "patient_id": 1})
    assert en.status_code == 503 and "maintenance until about 19 Nov 11:00 (Beijing time)" in en.json()["detail"]
    page = await client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "系统维护中" in page.text and "<script" not in page.text

    # what keeps working: staff, health, the payment provider's callbacks
    assert (await client.get("/api/v1/staff/me", headers=operator)).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["maintenance"] is True
    callback = await client.post("/api/v1/payments/notify/paysim", content=b"{}")
    assert callback.status_code != 503

    r = await client.put("/api/v1/staff/maintenance", headers=operator, json={"active": False})
    assert r.json()["active"] is False
    assert (await client.get("/api/v1/hospitals")).status_code == 200
    async with db.read() as s:
        actions = list(await s.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))
    assert actions[-2:] == ["maintenance.on", "maintenance.off"]


async def test_the_deploy_file_switches_it_without_the_database(app, client, tmp_path, clock):
    switch = maintenance.Switch(app.state.db, file=str(tmp_path / "maintenance.json"))
    app.state.maintenance.file = switch.file
    app.state.maintenance.forget()
    assert (await client.get("/api/v1/hospitals")).status_code == 200
    (tmp_path / "maintenance.json").write_text(json.dumps({"note": "版本升级"}), encoding="utf-8")
    app.state.maintenance.forget()
    r = await client.get("/api/v1/hospitals")
    assert r.status_code == 503 and r.headers["retry-after"] == "300" and "版本升级" in r.json()["detail"]
    (tmp_path / "maintenance.json").write_text("not json", encoding="utf-8")  # still on
    app.state.maintenance.forget()
    assert (await client.get("/api/v1/hospitals")).status_code == 503
    (tmp_path / "maintenance.json").unlink()
    app.state.maintenance.forget()
    assert (await client.get("/api/v1/hospitals")).status_code == 200


async def test_other_processes_follow_within_the_cache_interval(app, db, clock):
    """A second process's switch (its own cache) sees the operator's change once its cache
    interval has passed, and not before: the bounded delay the docs promise."""
    other = maintenance.Switch(db)
    assert await other.current(clock.now(), 100.0) is None
    async with db.begin() as s:
        await maintenance.do_set(s, active=True, until=None, note=None, staff_id=None, now=clock.now())
    assert await other.current(clock.now(), 100.0 + maintenance.CACHE_SECONDS / 2) is None  # cached
    state = await other.current(clock.now(), 100.0 + maintenance.CACHE_SECONDS)
    assert state is not None and state.source == "operator"


async def test_a_request_in_flight_when_it_turns_on_finishes(app, client, db, clock):
    """The check is made when a request arrives: one already inside completes normally."""
    started, release = asyncio.Event(), asyncio.Event()
    operator = await _operator(db, clock)

    from guahao.catalog import service as catalog_service
    real = catalog_service.list_hospitals

    async def waiting_list(*args, **kwargs):
        started.set()
        await release.wait()
        return await real(*args, **kwargs)

    catalog_service.list_hospitals = waiting_list
    try:
        in_flight = asyncio.create_task(client.get("/api/v1/hospitals"))
        await asyncio.wait_for(started.wait(), 10)
        r = await client.put("/api/v1/staff/maintenance", headers=operator, json={"active": True})
        assert r.status_code == 200
        release.set()
        assert (await in_flight).status_code == 200
        assert (await client.get("/api/v1/hospitals")).status_code == 503
    finally:
        catalog_service.list_hospitals = real
