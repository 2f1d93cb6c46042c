"""Drift detection against a real simulator process: the HIS's books changed behind our back
(a visit cancelled at the window, an order we never made, a write-back still queued) are
reported by the staff API, the metric and the job, and never silently overwritten."""
from __future__ import annotations

import datetime as dt

import pytest

from guahao.core import metrics
from guahao.his import drift
from guahao.his.client import order_id_for
from tests.builders import auth, make_hospital, make_staff
from tests.his_records_support import fresh_his_clients, sim_client  # noqa: F401 (fixture)
from tests.his_support import his_sim  # noqa: F401 (fixture)
from tests.his_synced_support import (
    BAND,
    SESSION,
    booking,
    confirmed,
    job_context,
    platform_slot,
    run_jobs,
    synced_world,
)


def _count(kind: str) -> float:
    return metrics.HIS_DRIFT.labels(kind)._value.get()


async def _drift(client, hid: int, headers: dict):
    return await client.get(f"/api/v1/staff/hospitals/{hid}/his-drift", headers=headers)


async def test_changes_behind_our_back_are_reported_and_not_overwritten(client, db, clock, his_sim, app, settings):
    w = await synced_world(client, db, clock, his_sim)
    ctx = job_context(app, settings, clock)
    slot = await platform_slot(db, BAND)
    kept, _, _ = await confirmed(db, clock, slot.id)
    at_window, _, _ = await confirmed(db, clock, slot.id)
    await run_jobs(ctx, clock)
    r = await _drift(client, w["hospital"], w["operator"])
    assert r.status_code == 200 and r.json()["differences"] == [], r.text  # in agreement

    # behind our back: the patient cancels at the hospital's window; someone makes an order
    # under our platform that we know nothing of
    his_sim.admin("POST", f"/admin/orders/guahao/{order_id_for(at_window)}/cancel")
    his = sim_client(his_sim)
    await his.lock("gh-999999", f"{SESSION}-2", "guahao", 10)
    await his.confirm("gh-999999")
    await his.aclose()
    before = _count("cancelled_at_window")

    r = await _drift(client, w["hospital"], w["operator"])
    assert r.status_code == 200, r.text
    body = r.json()
    found = {(d["kind"], d["booking_id"], d["order_id"], d["ours"], d["at_his"]) for d in body["differences"]}
    assert found == {("cancelled_at_window", at_window, order_id_for(at_window), "confirmed", "cancelled"),
                     ("unknown_to_us", None, "gh-999999", None, "confirmed")}
    assert body["counts"] == {"cancelled_at_window": 1, "unknown_to_us": 1}
    assert _count("cancelled_at_window") == before + 1
    # reported, not fixed: our booking is as it was
    assert (await booking(db, at_window)).state == "confirmed" and (await booking(db, kept)).his_flag is None


async def test_a_write_back_still_queued_shows_as_missing_with_the_queue_lag(client, db, clock, his_sim, app,
                                                                             settings):
    w = await synced_world(client, db, clock, his_sim)
    ctx = job_context(app, settings, clock)
    slot = await platform_slot(db, BAND)
    his_sim.faults(down=True)
    pending, _, _ = await confirmed(db, clock, slot.id)
    await run_jobs(ctx, clock)  # fails: the HIS is down
    clock.advance(minutes=10)
    his_sim.faults()
    reports = await drift.check_all(ctx)  # the periodic job: the same comparison, logged and counted
    [report] = reports
    [difference] = report.differences
    assert (difference.kind, difference.booking_id, difference.writeback_pending) == ("missing_at_his", pending, True)
    assert report.writeback_pending == 1 and report.writeback_lag_seconds == pytest.approx(600)

    await run_jobs(ctx, clock, later=dt.timedelta(hours=1))  # the queue catches up
    r = await _drift(client, w["hospital"], w["operator"])
    assert r.json()["differences"] == [] and r.json()["writeback_lag_seconds"] is None


async def test_capacity_cut_flags_are_listed_for_the_operator(client, db, clock, his_sim):
    from guahao.his import sync

    w = await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    await confirmed(db, clock, slot.id)
    second, _, _ = await confirmed(db, clock, slot.id)
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "guahao", "capacity": 1})
    await sync.sync_hospital(db, w["hospital"], now=clock.now())
    r = await _drift(client, w["hospital"], w["operator"])
    assert r.json()["flagged"] == [{"booking_id": second, "flag": "capacity_cut", "state": "confirmed"}]


async def test_access_operator_and_own_admin_only_and_his_down_still_reports_our_side(client, db, clock, his_sim):
    w = await synced_world(client, db, clock, his_sim)
    hid = w["hospital"]
    other = await make_hospital(db, clock.now(), name="别的医院")
    _, own_admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=hid)
    _, own_desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=hid)
    _, other_admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=other)
    assert (await _drift(client, hid, auth(own_admin))).status_code == 200
    assert (await _drift(client, hid, auth(own_desk))).status_code == 403
    assert (await _drift(client, hid, auth(other_admin))).status_code == 404
    assert (await client.get(f"/api/v1/staff/hospitals/{hid}/his-drift")).status_code == 401

    his_sim.faults(down=True)
    await confirmed(db, clock, (await platform_slot(db, BAND)).id)  # its write-back is queued
    clock.advance(seconds=30)
    r = await _drift(client, hid, w["operator"])
    assert r.status_code == 200, r.text
    assert (r.json()["his_error"], r.json()["differences"]) == ("his_unavailable", [])
    assert (r.json()["writeback_pending"], r.json()["writeback_lag_seconds"]) == (1, 30)
