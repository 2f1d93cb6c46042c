"""Write-back of bookings to the hospital's HIS (I6) against a real simulator process over
loopback HTTP: the end-to-end synced path, and exactly once in effect through HIS downtime,
a lost answer, a HIS killed mid-call, and ordering between confirmation and cancellation."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from guahao.his.client import order_id_for
from guahao.payments.fake import InMemoryPayments
from tests.his_records_support import fresh_his_clients  # noqa: F401 (fixture)
from tests.his_support import his_sim  # noqa: F401 (fixture)
from tests.his_synced_support import (
    BAND,
    SESSION,
    booking,
    cancel_headers,
    confirmed,
    held,
    his_orders,
    job_context,
    platform_slot,
    run_jobs,
    synced_world,
    visit_numbers_given,
)
from tests.payments_support import start_payment

LATER = dt.timedelta(hours=1)  # past any backoff of a retried job


@pytest.fixture
def ctx(app, settings, clock):
    return job_context(app, settings, clock)


@pytest.fixture
def fake(app, clock) -> InMemoryPayments:
    port = InMemoryPayments(clock=clock)
    app.state.providers["payments"] = port
    return port


async def test_synced_end_to_end_paid_is_confirmed_at_the_his_and_cancel_cancels_it(client, db, clock, his_sim,
                                                                                  ctx, fake):
    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    assert slot.capacity == 2  # the HIS platform pool `guahao` of this band
    booking_id, token, _ = await held(db, clock, slot.id)
    assert his_orders(his_sim) == []  # synced: the hold is ours alone

    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    headers, body = fake.pay(no)
    assert (await client.post("/api/v1/payments/notify/paysim", content=body, headers=headers)).status_code == 200
    await run_jobs(ctx, clock)

    [(order_id, state, visit_no, _)] = his_orders(his_sim)
    assert (order_id, state) == (order_id_for(booking_id), "confirmed")
    row = await booking(db, booking_id)
    assert (row.state, row.his_state, row.his_visit_no) == ("confirmed", "confirmed", visit_no)

    r = await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=cancel_headers(token))
    assert r.status_code == 200, r.text
    await run_jobs(ctx, clock)
    assert his_orders(his_sim) == [(order_id, "cancelled", visit_no, "platform")]
    assert (await booking(db, booking_id)).his_state == "cancelled"


async def test_his_down_for_the_whole_confirmation_then_back_confirms_exactly_once(client, db, clock, his_sim, ctx):
    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    his_sim.faults(down=True)
    booking_id, _, _ = await confirmed(db, clock, slot.id)
    for _ in range(3):  # the worker keeps trying while the HIS is down; nothing is recorded
        await run_jobs(ctx, clock, later=LATER)
        assert (await booking(db, booking_id)).his_state is None
    assert his_orders(his_sim) == []

    his_sim.faults()  # back
    await run_jobs(ctx, clock, later=LATER)
    [(_, state, visit_no, _)] = his_orders(his_sim)
    assert state == "confirmed" and visit_numbers_given(his_sim) == 1
    assert (await booking(db, booking_id)).his_visit_no == visit_no


@pytest.mark.parametrize("only", ["/confirm", ""])
async def test_ack_lost_on_confirm_still_confirms_exactly_once(client, db, clock, his_sim, ctx, only):
    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, _, _ = await confirmed(db, clock, slot.id)
    # the HIS commits the call, and the answer never arrives (the confirm only, or every call)
    his_sim.faults(ack_lost=True, ack_lost_only=only)
    for _ in range(3):
        await run_jobs(ctx, clock, later=LATER)
    assert (await booking(db, booking_id)).his_state is None  # we never heard back
    assert [o[1] for o in his_orders(his_sim)] == ["confirmed" if only else "locked"]  # but the HIS acted

    his_sim.faults()
    await run_jobs(ctx, clock, later=LATER)  # the repeat is answered with the same order
    [(_, state, visit_no, _)] = his_orders(his_sim)
    assert state == "confirmed" and visit_numbers_given(his_sim) == 1
    row = await booking(db, booking_id)
    assert (row.his_state, row.his_visit_no) == ("confirmed", visit_no)


async def test_his_killed_mid_write_back_and_restarted_confirms_exactly_once(client, db, clock, his_sim, ctx):
    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, _, _ = await confirmed(db, clock, slot.id)
    his_sim.faults(latency_ms=1500)  # the call is in flight at the HIS when it dies
    job = asyncio.create_task(run_jobs(ctx, clock))
    await asyncio.sleep(0.7)
    his_sim.kill()
    await job
    assert (await booking(db, booking_id)).his_state is None

    his_sim.start()  # the same database file; the fault switches died with the process
    await run_jobs(ctx, clock, later=LATER)
    [(_, state, visit_no, _)] = his_orders(his_sim)
    assert state == "confirmed" and visit_numbers_given(his_sim) == 1
    assert (await booking(db, booking_id)).his_visit_no == visit_no


async def test_the_write_back_repeated_after_it_was_recorded_changes_nothing(client, db, clock, his_sim, ctx):
    from guahao.his import writeback

    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, _, _ = await confirmed(db, clock, slot.id)
    await run_jobs(ctx, clock)
    first = his_orders(his_sim)
    # at-least-once delivery: the same message again (a lapsed lease, say), even with the
    # record lost, asks the HIS again and gets the same order and visit number
    async with db.begin() as s:
        from guahao.booking import his_state
        await his_state.do_record_his(s, booking_id, his_state="pending", now=clock.now())
    await writeback.write_confirmed(ctx, booking_id)
    assert his_orders(his_sim) == first and visit_numbers_given(his_sim) == 1
    assert (await booking(db, booking_id)).his_visit_no == first[0][2]


async def test_cancel_waits_for_a_confirmation_still_queued_and_nothing_stays_live_at_the_his(
        client, db, clock, his_sim, ctx):
    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, token, _ = await confirmed(db, clock, slot.id)
    his_sim.faults(down=True)
    await run_jobs(ctx, clock)  # the confirmation's write-back fails and waits for a retry
    r = await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=cancel_headers(token))
    assert r.status_code == 200, r.text
    his_sim.faults()
    for _ in range(3):
        await run_jobs(ctx, clock, later=LATER)
    # the confirmation saw the booking cancelled and did not confirm it; the cancellation
    # found nothing to undo
    assert [o[1] for o in his_orders(his_sim)] in ([], ["cancelled"])
    assert visit_numbers_given(his_sim) == 0


async def test_a_refused_confirmation_is_flagged_for_the_hospital_not_retried(client, db, clock, his_sim, ctx):
    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, _, _ = await confirmed(db, clock, slot.id)
    his_sim.admin("POST", f"/admin/sessions/{SESSION}/cancel")  # before our write-back ran
    await run_jobs(ctx, clock)
    row = await booking(db, booking_id)
    assert (row.his_state, row.his_flag) == ("refused", "his_session_cancelled")
    assert await run_jobs(ctx, clock, later=LATER) == 0  # done with: nothing left to retry


async def test_no_show_is_recorded_at_the_his(client, db, clock, his_sim, ctx):
    from guahao.booking import hospital_actions

    await synced_world(client, db, clock, his_sim)
    slot = await platform_slot(db, BAND)
    booking_id, _, _ = await confirmed(db, clock, slot.id)
    await run_jobs(ctx, clock)
    clock.advance(days=3)  # the session is over
    async with db.begin() as s:
        assert await hospital_actions.do_mark_no_shows(s, now=clock.now()) == 1
    await run_jobs(ctx, clock)
    assert [o[1] for o in his_orders(his_sim)] == ["no_show"]


async def test_use_his_visit_no_shows_the_his_number_on_the_booking_and_in_the_sms(client, db, clock, his_sim, ctx):
    await synced_world(client, db, clock, his_sim, use_his_visit_no=True)
    his_sim.admin("POST", "/admin/window/sales", {"band_id": BAND})  # the HIS's numbers now differ from ours
    slot = await platform_slot(db, BAND)
    booking_id, token, _ = await confirmed(db, clock, slot.id)
    r = await client.get(f"/api/v1/bookings/{booking_id}", headers=cancel_headers(token))
    assert (r.json()["visit_no"], r.json()["visit_no_from_his"]) == (None, True)  # not known yet

    for _ in range(3):  # the SMS waits for the write-back (a retry 20 s later, not a failure)
        await run_jobs(ctx, clock, later=dt.timedelta(seconds=30))
    row = await booking(db, booking_id)
    assert (row.visit_no, row.his_visit_no) == (1, 2)
    r = await client.get(f"/api/v1/bookings/{booking_id}", headers=cancel_headers(token))
    assert r.json()["visit_no"] == 2
    sent = [m for m in ctx.providers["sms"].sent if m.template == "booking_confirmed"]
    assert sent and {m.params["visit_no"] for m in sent} == {"2"}


async def test_sms_waits_a_bounded_time_for_the_his_number_then_says_the_hospital_gives_it(
        client, db, clock, his_sim, ctx):
    await synced_world(client, db, clock, his_sim, use_his_visit_no=True)
    slot = await platform_slot(db, BAND)
    his_sim.faults(down=True)
    await confirmed(db, clock, slot.id)
    await run_jobs(ctx, clock, later=dt.timedelta(minutes=5))
    assert ctx.providers["sms"].sent == []  # still waiting
    await run_jobs(ctx, clock, later=dt.timedelta(minutes=6))
    await run_jobs(ctx, clock, later=dt.timedelta(minutes=1))
    sent = [m for m in ctx.providers["sms"].sent if m.template == "booking_confirmed"]
    assert sent and {m.params["visit_no"] for m in sent} == {"以医院通知为准"}
