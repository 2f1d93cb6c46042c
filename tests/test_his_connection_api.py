"""The operator's HIS connection API, and switching a hospital's HIS mode."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

from sqlalchemy import select

from guahao.core.audit import AuditEntry
from tests.builders import auth, make_hospital, make_staff
from tests.conftest import LOG_FILE
from tests.his_records_support import (  # noqa: F401 (fixture)
    connect,
    connection_body,
    fresh_his_clients,
    hold,
    hospital_world,
    operator_headers,
)


class FakeSim:
    """Connection settings only: nothing here talks to a HIS."""

    url = "http://127.0.0.1:8299/his/v1"

    @staticmethod
    def platform_key(platform: str = "guahao") -> bytes:
        return bytes(range(32))


SIM = FakeSim()
KEY_HEX = SIM.platform_key().hex()


async def _audit_rows(db, hospital_id: int) -> list[AuditEntry]:
    async with db.read() as s:
        return list(await s.scalars(select(AuditEntry).where(AuditEntry.hospital_id == hospital_id,
                                                              AuditEntry.action == "his_connection.set")
                                    .order_by(AuditEntry.id)))


# --- the connection ---------------------------------------------------------------------------

async def test_operator_sets_the_connection_and_the_key_is_never_echoed(client, db, clock):
    hid = await make_hospital(db, clock.now())
    headers = await operator_headers(db, clock.now())
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/his-connection", json=connection_body(SIM, timeout_ms=1500),
                         headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["key_set"] is True and body["timeout_ms"] == 1500 and body["base_url"] == SIM.url
    assert body["updated_at"].endswith("+08:00")
    assert KEY_HEX not in r.text and "key" not in body
    r = await client.get(f"/api/v1/staff/hospitals/{hid}/his-connection", headers=headers)
    assert r.status_code == 200 and KEY_HEX not in r.text and r.json()["pool"] == "guahao"

    (row,) = await _audit_rows(db, hid)
    detail = json.loads(row.detail)
    assert detail["created"] is True and detail["key_replaced"] is False and detail["pool"] == [None, "guahao"]
    assert KEY_HEX not in row.detail

    other_key = bytes(range(1, 33)).hex()
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/his-connection",
                         json={**connection_body(SIM), "key": other_key, "pool": "shared"}, headers=headers)
    assert r.status_code == 200 and other_key not in r.text
    second = json.loads((await _audit_rows(db, hid))[1].detail)
    assert second["key_replaced"] is True and second["pool"] == ["guahao", "shared"] and "base_url" not in second
    assert other_key not in (await _audit_rows(db, hid))[1].detail
    if LOG_FILE.exists():
        assert KEY_HEX not in LOG_FILE.read_text(errors="replace")


async def test_hospital_staff_read_a_masked_view_of_their_own_and_cannot_write(client, db, clock):
    hid = await make_hospital(db, clock.now())
    await connect(client, await operator_headers(db, clock.now()), hid, SIM)
    _, admin_token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hid)

    r = await client.get(f"/api/v1/staff/hospitals/{hid}/his-connection", headers=auth(admin_token))
    assert r.status_code == 200, r.text
    assert r.json()["base_url"] == "http://127.0.0.1" and r.json()["key_set"] is True and KEY_HEX not in r.text
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/his-connection", json=connection_body(SIM),
                         headers=auth(admin_token))
    assert r.status_code == 403
    assert len(await _audit_rows(db, hid)) == 1


async def test_staff_of_another_hospital_learn_nothing(client, db, clock):
    hid = await make_hospital(db, clock.now())
    other = await make_hospital(db, clock.now(), name="别的医院")
    await connect(client, await operator_headers(db, clock.now()), hid, SIM)
    _, token = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=other)
    r = await client.get(f"/api/v1/staff/hospitals/{hid}/his-connection", headers=auth(token))
    assert r.status_code == 404
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/his-connection", json=connection_body(SIM),
                         headers=auth(token))
    assert r.status_code in (403, 404)
    assert len(await _audit_rows(db, hid)) == 1


async def test_bad_input_is_refused_without_echoing_the_key(client, db, clock):
    hid = await make_hospital(db, clock.now())
    headers = await operator_headers(db, clock.now())
    bad = "zz" + KEY_HEX
    r = await client.put(f"/api/v1/staff/hospitals/{hid}/his-connection",
                         json={**connection_body(SIM), "key": bad}, headers=headers)
    assert r.status_code == 422 and bad not in r.text
    r = await client.put("/api/v1/staff/hospitals/999999/his-connection", json=connection_body(SIM), headers=headers)
    assert r.status_code == 404
    r = await client.get(f"/api/v1/staff/hospitals/{hid}/his-connection", headers=headers)
    assert r.status_code == 404  # none set yet


# --- switching the mode ------------------------------------------------------------------------

async def _switch(client, headers, hid: int, mode: str, **extra):
    return await client.patch(f"/api/v1/staff/hospitals/{hid}", json={"his_mode": mode}, headers={**headers, **extra})


async def test_switching_to_a_his_mode_needs_a_connection(client, db, clock):
    hid = await make_hospital(db, clock.now())
    headers = await operator_headers(db, clock.now())
    r = await _switch(client, headers, hid, "realtime")
    assert r.status_code == 409 and r.json()["code"] == "his_connection_missing"
    r = await _switch(client, headers, hid, "synced", **{"Accept-Language": "en"})
    assert "no HIS connection" in r.json()["detail"]
    await connect(client, headers, hid, SIM)
    r = await _switch(client, headers, hid, "synced")
    assert r.status_code == 200 and r.json()["his_mode"] == "synced"


async def test_a_new_hospital_starts_local(client, db, clock):
    headers = await operator_headers(db, clock.now())
    body = {"name": "新医院", "level": "三级甲等", "city": "北京市", "district": "东城区", "address": "某路1号",
            "phone": "010-1", "latitude": 39.9, "longitude": 116.4, "his_mode": "realtime"}
    r = await client.post("/api/v1/staff/hospitals", json=body, headers=headers)
    assert r.status_code == 409 and r.json()["code"] == "his_connection_missing"
    r = await client.post("/api/v1/staff/hospitals", json={**body, "his_mode": "local"}, headers=headers)
    assert r.status_code == 201


async def test_switching_is_refused_while_bookings_are_live_and_allowed_once_they_ended(client, db, clock):
    w = await hospital_world(db, clock.now())
    headers = await operator_headers(db, clock.now())
    await connect(client, headers, w["hospital"], SIM)
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201 and r.json()["state"] == "held"

    r = await _switch(client, headers, w["hospital"], "synced")
    assert r.status_code == 409 and r.json()["code"] == "his_mode_locked"
    assert "不能切换" in r.json()["detail"]
    r = await _switch(client, headers, w["hospital"], "realtime", **{"Accept-Language": "en"})
    assert r.status_code == 409 and "live bookings" in r.json()["detail"]
    r = await client.get(f"/api/v1/staff/hospitals/{w['hospital']}", headers=headers)
    assert r.json()["his_mode"] == "local"
    # other edits of the hospital are not held up by its bookings
    r = await client.patch(f"/api/v1/staff/hospitals/{w['hospital']}", json={"phone": "010-2"}, headers=headers)
    assert r.status_code == 200

    clock.advance(minutes=16)  # the hold lapsed (nothing swept it): no longer live
    r = await _switch(client, headers, w["hospital"], "synced")
    assert r.status_code == 200 and r.json()["his_mode"] == "synced"
    r = await _switch(client, headers, w["hospital"], "local")
    assert r.status_code == 200


async def test_a_confirmed_booking_locks_the_mode_until_cancelled(client, db, clock):
    w = await hospital_world(db, clock.now(), fee=0)
    headers = await operator_headers(db, clock.now())
    await connect(client, headers, w["hospital"], SIM)
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201 and r.json()["state"] == "confirmed"
    booking_id = r.json()["id"]
    assert (await _switch(client, headers, w["hospital"], "realtime")).json()["code"] == "his_mode_locked"
    # a switch to the same mode is no switch
    assert (await _switch(client, headers, w["hospital"], "local")).status_code == 200

    r = await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(w["token"]))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert (await _switch(client, headers, w["hospital"], "realtime")).status_code == 200


async def test_bookings_of_another_hospital_do_not_lock_the_mode(client, db, clock):
    w = await hospital_world(db, clock.now(), fee=0)
    headers = await operator_headers(db, clock.now())
    r = await hold(client, w["token"], w["slots"][0], w["patient"])
    assert r.status_code == 201
    other = await make_hospital(db, clock.now() - dt.timedelta(days=1), name="别的医院")
    await connect(client, headers, other, SIM)
    assert (await _switch(client, headers, other, "synced")).status_code == 200


async def test_a_switch_waits_for_a_hold_in_flight_and_then_sees_it(client, db, clock):
    """A hold has read its slot (schedule share lock held) when the operator switches; then
    it inserts its booking (whose foreign key takes a key-share lock on the hospital row) and
    commits. The switch waits for it (no deadlock: it locks no hospital row before the
    schedules) and then counts it."""
    from guahao.booking import actions
    from guahao.booking.context import load_slot_context

    w = await hospital_world(db, clock.now())
    headers = await operator_headers(db, clock.now())
    await connect(client, headers, w["hospital"], SIM)
    async with db.begin() as session:
        await load_slot_context(session, w["slots"][0], lock_schedule=True)
        switch = asyncio.create_task(_switch(client, headers, w["hospital"], "synced"))
        await asyncio.sleep(0.5)  # the switch is now waiting on the schedule
        await actions.do_hold(session, account_id=w["account"], patient_id=w["patient"], slot_id=w["slots"][0],
                              now=clock.now())
    r = await switch
    assert r.status_code == 409 and r.json()["code"] == "his_mode_locked"
