"""Realtime mode against a real HIS simulator process over loopback HTTP: the HIS decides every
hold (locked, refused, unknown outcomes resolved by asking about the order), expiry and
cancellation release the lock there, and a twin request is told the same story."""
from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import func, select

from guahao.booking import actions, errors
from guahao.booking.schemas import BookingCreate
from guahao.core import idempotency
from guahao.his import connections
from guahao.his.client import order_id_for
from guahao.scheduling.models import SlotPosition
from tests.builders import auth
from tests.his_realtime_support import (
    BAND,
    POOL_SIZE,
    bookings,
    his_order,
    realtime_world,
    remaining_at_his,
    run_jobs,
    sweep,
    topics,
)
from tests.his_records_support import fresh_his_clients, hold, sim_client  # noqa: F401 (fixture)
from tests.his_support import his_sim  # noqa: F401 (fixture)


async def test_a_hold_is_locked_at_the_his_before_it_is_acknowledged(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 201, r.text
    booking_id = r.json()["id"]
    assert r.json()["state"] == "held" and "pay" in r.json()["allowed_actions"]
    order = await his_order(his_sim, booking_id)
    assert order is not None and order.state == "locked" and order.band_id == BAND and order.pool == "shared"
    (booking,) = await bookings(db, w["hospital"])
    assert (booking.state, booking.his_state) == ("held", "locked")
    assert await remaining_at_his(his_sim) == POOL_SIZE - 1


async def test_the_his_refusing_ends_the_attempt_as_sold_out(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim, seats=8)
    # the other platform sells the same pool: it takes every number first
    partner = sim_client(his_sim)
    partner.platform, partner._key = "partner", his_sim.platform_key("partner")
    for n in range(POOL_SIZE):
        await partner.lock(f"partner-{n:04d}", BAND, "shared", 10)
    await partner.aclose()

    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 409 and r.json()["code"] == "slot_sold_out", r.text
    (booking,) = await bookings(db, w["hospital"])
    # the attempt is recorded and ended: not live, seat free, no SMS, no strike
    assert (booking.state, booking.his_state, booking.state_reason) == ("cancelled", "refused", "his_refused")
    assert booking.strike_at is None
    assert not [t for t in await topics(db) if t.startswith("notify.")]
    async with db.read() as s:
        assert await s.scalar(select(func.count()).select_from(SlotPosition)
                              .where(SlotPosition.booking_id.is_not(None))) == 0
    assert await his_order(his_sim, booking.id) is None


async def test_a_lost_answer_to_the_lock_is_resolved_by_asking_about_the_order(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    # the HIS locks and commits, but our answer is lost on the way back; only the lock call
    his_sim.faults(ack_lost=True, paths="/v1/locks")
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 201, r.text
    (booking,) = await bookings(db, w["hospital"])
    assert (booking.state, booking.his_state) == ("held", "locked")
    assert (await his_order(his_sim, booking.id)).state == "locked"


async def test_a_lock_that_timed_out_without_happening_ends_the_attempt(client, db, clock, settings, his_sim):
    w = await realtime_world(client, db, clock, his_sim, timeout_ms=300)
    his_sim.faults(hang=True, paths="/v1/locks")  # the lock is never handled: nothing happened
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 503 and r.json()["code"] == "his_unavailable", r.text
    (booking,) = await bookings(db, w["hospital"])
    assert booking.state == "cancelled" and booking.state_reason == "his_unavailable"
    # the HIS did not know the order when asked, but a lock still travelling might land later:
    # the release is queued all the same
    assert "his.lock_release" in await topics(db)
    assert await his_order(his_sim, booking.id) is None
    assert await remaining_at_his(his_sim) == POOL_SIZE


async def test_an_outcome_still_unknown_is_answered_unavailable_and_released_later(client, db, clock, settings,
                                                                                    his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    his_sim.faults(ack_lost=True)  # every answer is lost, the order queries' too
    key = uuid.uuid4().hex
    r = await hold(client, w["token"], w["slot"], w["patients"][0], key=key)
    assert r.status_code == 503 and r.json()["code"] == "his_unavailable", r.text
    (booking,) = await bookings(db, w["hospital"])
    assert (booking.state, booking.his_state) == ("cancelled", "pending")
    his_sim.faults()
    assert (await his_order(his_sim, booking.id)).state == "locked"  # it did happen there

    # the lost answers opened the breaker: the release waits for it (a fresh client stands in
    # for the cool-down having passed) and is retried after its backoff
    await connections.close_all()
    clock.advance(minutes=5)
    await run_jobs(db, clock, settings)
    assert (await his_order(his_sim, booking.id)).state == "cancelled"
    assert (await bookings(db, w["hospital"]))[0].his_state == "cancelled"
    assert await remaining_at_his(his_sim) == POOL_SIZE
    # nothing was booked, so the same key may try again: a new attempt, locked this time
    clock.advance(seconds=1)
    r = await hold(client, w["token"], w["slot"], w["patients"][0], key=key)
    assert r.status_code == 201, r.text
    assert (await his_order(his_sim, r.json()["id"])).state == "locked"


async def test_an_expired_hold_releases_its_lock_at_the_his(client, db, clock, settings, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 201, r.text
    booking_id = r.json()["id"]
    clock.advance(minutes=16)  # past the hold (15 minutes by default)
    assert await sweep(db, clock) == 1
    await run_jobs(db, clock, settings)
    assert (await his_order(his_sim, booking_id)).state == "cancelled"
    assert (await bookings(db, w["hospital"]))[0].his_state == "cancelled"
    assert await remaining_at_his(his_sim) == POOL_SIZE


async def test_a_cancelled_hold_releases_its_lock_at_the_his(client, db, clock, settings, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    booking_id = r.json()["id"]
    r = await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(w["token"]))
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert await remaining_at_his(his_sim) == POOL_SIZE - 1  # not yet: through the outbox
    await run_jobs(db, clock, settings)
    assert (await his_order(his_sim, booking_id)).state == "cancelled"
    assert await remaining_at_his(his_sim) == POOL_SIZE


async def test_a_release_for_the_his_while_it_is_down_waits_for_it(client, db, clock, settings, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    booking_id = r.json()["id"]
    await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(w["token"]))
    his_sim.faults(down=True)
    await run_jobs(db, clock, settings)
    his_sim.faults()
    assert (await his_order(his_sim, booking_id)).state == "locked"
    clock.advance(minutes=5)  # past the retry backoff
    await run_jobs(db, clock, settings)
    assert (await his_order(his_sim, booking_id)).state == "cancelled"


async def test_a_twin_request_waits_for_the_his_and_gets_the_same_answer(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    his_sim.faults(latency_ms=400)  # the first request is at the HIS when the twin comes
    key = uuid.uuid4().hex
    first = asyncio.create_task(hold(client, w["token"], w["slot"], w["patients"][0], key=key))
    await asyncio.sleep(0.15)
    twin = await hold(client, w["token"], w["slot"], w["patients"][0], key=key)
    first = await first
    assert first.status_code == twin.status_code == 201, (first.text, twin.text)
    assert first.json() == twin.json()
    assert len(await bookings(db, w["hospital"])) == 1
    assert await remaining_at_his(his_sim) == POOL_SIZE - 1


@pytest.mark.parametrize("fee", [0])
async def test_a_free_registration_is_confirmed_once_locked(client, db, clock, his_sim, fee):
    w = await realtime_world(client, db, clock, his_sim, fee=fee)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    assert r.status_code == 201 and r.json()["state"] == "confirmed", r.text
    assert "his.booking_confirmed" in await topics(db)  # the HIS confirm goes through the outbox
    assert (await his_order(his_sim, r.json()["id"])).state == "locked"


async def test_hold_pay_and_the_his_confirms_the_number(client, db, clock, settings, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    r = await hold(client, w["token"], w["slot"], w["patients"][0])
    booking_id = r.json()["id"]
    async with db.begin() as s:  # what a successful payment does (payments.actions)
        await actions.do_confirm(s, booking_id, now=clock.now())
    await run_jobs(db, clock, settings)
    order = await his_order(his_sim, booking_id)
    assert order.order_id == order_id_for(booking_id)
    assert order.state == "confirmed" and order.visit_no is not None


async def test_an_attempt_the_his_has_not_answered_cannot_be_paid(client, db, clock, his_sim):
    w = await realtime_world(client, db, clock, his_sim)
    async with db.begin() as s:  # step (a) alone: as if the process died while asking the HIS
        booking = await actions.do_hold(s, account_id=w["account"], patient_id=w["patients"][0], slot_id=w["slot"],
                                        now=clock.now())
    assert (booking.state, booking.his_state) == ("held", "pending")
    r = await client.get(f"/api/v1/bookings/{booking.id}", headers=auth(w["token"]))
    assert r.json()["allowed_actions"] == ["cancel"]
    with pytest.raises(errors.TransitionRefused):
        async with db.begin() as s:
            await actions.do_confirm(s, booking.id, now=clock.now())
    # it ends at its deadline like any hold, and that releases whatever the HIS may have locked
    clock.advance(minutes=16)
    assert await sweep(db, clock) == 1
    assert "his.lock_release" in await topics(db)


async def test_a_retry_finishes_an_attempt_whose_process_died_while_asking_the_his(client, db, clock, his_sim,
                                                                                   monkeypatch):
    w = await realtime_world(client, db, clock, his_sim)
    key, body = uuid.uuid4().hex, BookingCreate(slot_id=w["slot"], patient_id=w["patients"][0])
    req_hash = idempotency.request_hash("POST", "/api/v1/bookings", body.model_dump(exclude_defaults=True))

    async def attempt(session):  # step (a) as hold_flow runs it; the process then "dies"
        booking, ctx, _ = await actions.do_hold(session, account_id=w["account"], patient_id=body.patient_id,
                                                slot_id=body.slot_id, now=clock.now(), with_context=True)
        return idempotency.InFlight({"booking_id": booking.id, "hospital_id": ctx.hospital_id,
                                     "band_id": ctx.his_band_id, "minutes": 17})

    status, in_flight = await idempotency.run(db, account_id=w["account"], key=key, req_hash=req_hash,
                                              arrived_at=clock.now(), work=attempt, render_error=str,
                                              replay_until=lambda exc: None)
    assert status == idempotency.IN_FLIGHT
    monkeypatch.setattr(idempotency, "IN_FLIGHT_WAIT", 0.3)  # how long a retry waits for the dead one

    r = await hold(client, w["token"], w["slot"], w["patients"][0], key=key)
    assert r.status_code == 201 and r.json()["id"] == in_flight["booking_id"], r.text
    assert (await his_order(his_sim, in_flight["booking_id"])).state == "locked"
    (booking,) = await bookings(db, w["hospital"])
    assert (booking.state, booking.his_state) == ("held", "locked")
    again = await hold(client, w["token"], w["slot"], w["patients"][0], key=key)
    assert again.json() == r.json()  # from now on, the key's answer
