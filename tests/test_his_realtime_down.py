"""Realtime mode with the HIS down, hanging or failing, and availability from the HIS: holds
answer his_unavailable and leave nothing live, the breaker opens and closes again, and
availability says where its numbers come from (never a 500)."""
from __future__ import annotations

import asyncio

from sqlalchemy import select, update

from guahao.booking.models import LIVE_STATES
from guahao.core import metrics
from guahao.his import connections
from guahao.his.models import HisConnection
from tests.his_realtime_support import (
    BAND,
    DAY,
    POOL_SIZE,
    bookings,
    his_order,
    realtime_world,
    remaining_at_his,
    run_jobs,
)
from tests.his_records_support import fresh_his_clients, hold  # noqa: F401 (fixture)
from tests.his_support import his_sim  # noqa: F401 (fixture)


def _calls(operation: str, outcome: str) -> float:
    return metrics.HIS_CALLS.labels(operation, outcome)._value.get()


async def _breaker(db, hospital_id: int):
    async with db.read() as s:
        return (await connections.client_for(s, hospital_id)).breaker


async def _nothing_live(db, hospital_id: int) -> bool:
    return not [b for b in await bookings(db, hospital_id) if b.state in LIVE_STATES]


async def test_the_his_down_answers_his_unavailable_and_books_nothing(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    his_sim.faults(down=True)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 503 and r.json()["code"] == "his_unavailable", r.text
    assert "医院系统暂时无法连接" in r.json()["detail"]
    r = await hold(client, w["token"], w["slot"], w["patients"][1], **{"Accept-Language": "en"})
    assert r.status_code == 503 and "cannot be reached" in r.json()["detail"]
    assert await _nothing_live(db, w["hospital"])
    # a 503 means nothing happened there: no release is needed
    assert [b.his_state for b in await bookings(db, w["hospital"])] == ["refused", "refused"]
    his_sim.faults()
    assert await remaining_at_his(his_sim) == POOL_SIZE


async def test_a_hanging_his_is_given_up_after_the_timeout_and_leaves_nothing_live(client, db, clock, settings,
                                                                                   his_sim):
    w = await realtime_world(client, db, clock, his_sim, timeout_ms=200)
    his_sim.faults(hang=True)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 503 and r.json()["code"] == "his_unavailable", r.text
    assert await _nothing_live(db, w["hospital"])
    his_sim.faults()
    # a hung request did nothing at the HIS; the release finds no order and stops once the
    # window in which a late lock could land has passed
    clock.advance(minutes=3)
    await connections.close_all()  # the hangs opened the breaker; its cool-down has passed
    await run_jobs(db, clock, settings)
    (booking,) = await bookings(db, w["hospital"])
    assert booking.his_state == "cancelled" and await his_order(his_sim, booking.id) is None
    assert await remaining_at_his(his_sim) == POOL_SIZE


async def test_the_breaker_opens_on_a_dead_his_and_closes_when_it_is_back(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim, patients=8)
    his_sim.faults(down=True)
    before = _calls("lock", "breaker_open")
    for n in range(6):  # five failures open it (his/breaker.py)
        r = await hold(client, w["token"], w["slot"], w["patients"][n])
        assert r.status_code == 503, r.text
    breaker = await _breaker(db, w["hospital"])
    assert breaker.state == "open"
    assert _calls("lock", "breaker_open") > before  # the rush no longer reaches the dead HIS
    assert await _nothing_live(db, w["hospital"])

    his_sim.faults()
    breaker.cool_down = 0.2
    await asyncio.sleep(0.3)  # the cool-down passes: one trial call goes through and closes it
    r = await hold(client, w["token"], w["slot"], w["patients"][6])
    assert r.status_code == 201, r.text
    assert breaker.state == "closed"
    assert (await his_order(his_sim, r.json()["id"])).state == "locked"


async def test_with_half_the_calls_failing_every_answer_agrees_with_the_his(client, db, clock, settings, his_sim):
    w = await realtime_world(client, db, clock, his_sim, patients=6, seats=8)
    his_sim.faults(error_rate=0.5)
    answers = [await hold(client, w["token"], w["slot"], p) for p in w["patients"]]
    assert {a.status_code for a in answers} <= {201, 503}
    his_sim.faults()
    await run_jobs(db, clock, settings)
    for answer in answers:
        if answer.status_code == 201:
            assert (await his_order(his_sim, answer.json()["id"])).state == "locked"
    held = [b for b in await bookings(db, w["hospital"]) if b.state in LIVE_STATES]
    assert {b.id for b in held} == {a.json()["id"] for a in answers if a.status_code == 201}
    assert all(b.his_state == "locked" for b in held)
    assert await remaining_at_his(his_sim) == POOL_SIZE - len(held)


# --- availability ----------------------------------------------------------------------------

async def _slot_view(client, doctor_id: int) -> tuple[dict, dict]:
    r = await client.get(f"/api/v1/doctors/{doctor_id}/availability", params={"from": DAY.isoformat(), "days": 1})
    assert r.status_code == 200, r.text
    body = r.json()
    (schedule,) = [s for p in body["days"][0]["periods"] for s in p["schedules"]]
    return body, schedule["slots"][0]


async def _doctor(db, schedule_id: int) -> int:
    from guahao.scheduling.models import Schedule

    async with db.read() as s:
        return await s.scalar(select(Schedule.doctor_id).where(Schedule.id == schedule_id))


async def test_availability_of_a_realtime_hospital_comes_from_the_his(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim, seats=8, cache_ms=0)
    doctor = await _doctor(db, w["schedule"])
    body, slot = await _slot_view(client, doctor)
    assert body["source"] == "his" and body["as_of"].endswith("+08:00")
    assert slot["remaining"] == POOL_SIZE  # the HIS's six, not our eight seats
    # the other platform sells two numbers: we see it at once (no cache here)
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "shared", "capacity": 2})
    body, slot = await _slot_view(client, doctor)
    assert slot["remaining"] == 2 and slot["state"] == "bookable"
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "shared", "capacity": 0})
    body, slot = await _slot_view(client, doctor)
    assert slot["remaining"] == 0 and slot["state"] == "full"


async def test_availability_is_cached_for_the_connections_cache_time(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim, cache_ms=60_000)
    doctor = await _doctor(db, w["schedule"])
    first, slot = await _slot_view(client, doctor)
    assert slot["remaining"] == POOL_SIZE
    his_sim.admin("POST", "/admin/capacity", {"band_id": BAND, "pool": "shared", "capacity": 1})
    again, slot = await _slot_view(client, doctor)
    assert slot["remaining"] == POOL_SIZE and again["as_of"] == first["as_of"]  # the cached answer
    async with db.begin() as s:
        await s.execute(update(HisConnection).values(cache_ms=0))
    _, slot = await _slot_view(client, doctor)
    assert slot["remaining"] == 1


async def test_availability_with_the_his_down_says_so_and_is_not_an_error(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim, cache_ms=0)
    doctor = await _doctor(db, w["schedule"])
    his_sim.faults(down=True)
    body, slot = await _slot_view(client, doctor)
    assert body["source"] == "his_unavailable" and body["as_of"] is None
    his_sim.faults(ack_lost=True)  # an answer that never arrives: the same
    body, _ = await _slot_view(client, doctor)
    assert body["source"] == "his_unavailable"


async def test_availability_of_a_local_hospital_does_not_ask_any_his(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim, cache_ms=0)
    async with db.begin() as s:
        from guahao.catalog.models import Hospital

        await s.execute(update(Hospital).where(Hospital.id == w["hospital"]).values(his_mode="local"))
    his_sim.faults(down=True)
    before = _calls("availability", "his_unavailable")
    body, slot = await _slot_view(client, await _doctor(db, w["schedule"]))
    assert body["source"] == "local" and slot["remaining"] == 8
    assert _calls("availability", "his_unavailable") == before


async def test_the_doctor_page_says_where_the_numbers_come_from(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim, cache_ms=0)
    doctor = await _doctor(db, w["schedule"])
    page = await client.get(f"/doctors/{doctor}", params={"day": DAY.isoformat()})
    assert page.status_code == 200 and 'data-source="his"' in page.text and "医院系统于" in page.text
    his_sim.faults(down=True)
    page = await client.get(f"/doctors/{doctor}", params={"day": DAY.isoformat()})
    assert page.status_code == 200 and 'data-source="his_unavailable"' in page.text
