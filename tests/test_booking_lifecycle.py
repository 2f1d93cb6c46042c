"""The state machine and the time rules: expiry, confirmation, cancellation, 停诊, check-in,
no-shows and restrictions."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select, update

from guahao.booking import actions, hospital_actions, lifecycle
from guahao.booking.errors import HoldExpired, TransitionRefused
from guahao.booking.lifecycle import Actor
from guahao.booking.models import STATES as STORED_STATES
from guahao.booking.models import Booking, BookingEvent, Restriction
from guahao.outbox.models import OutboxMessage
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital, make_staff

UTC = dt.UTC
DAY = dt.date(2026, 11, 21)


@pytest.fixture
async def world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    sch, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=1)
    account_id, token = await make_account(db, now)
    patient = await make_patient(db, now, account_id)
    return {"hospital": hid, "department": dep, "doctor": doc, "schedule": sch, "slot": slots[0],
            "account": account_id, "token": token, "patient": patient}


async def _hold(client, token, slot, patient):
    r = await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    return r


async def _confirm(db, clock, booking_id):
    async with db.begin() as s:
        return await actions.do_confirm(s, booking_id, now=clock.now())


# --- the transition table ----------------------------------------------------------------

# DESIGN.md section 3, copied out by hand (do NOT derive it from lifecycle.TRANSITIONS: the
# point is to catch a code table that drifts from the design). The code names the events:
#   hold taken, fee > 0 -> "hold"            hold taken, fee 0 -> "hold_free"
#   payment succeeded before the deadline -> "pay"   hold deadline passed -> "expire"
#   patient cancels -> "cancel"              停诊 -> "suspend"
#   patient checks in -> "check_in"          period over without check-in -> "miss"
#   visit done -> "complete"
DESIGN_TRANSITIONS = {
    (None, "hold"): "held",
    (None, "hold_free"): "confirmed",
    ("held", "pay"): "confirmed",
    ("held", "expire"): "expired",
    ("held", "cancel"): "cancelled",
    ("held", "suspend"): "revoked",
    ("confirmed", "suspend"): "revoked",
    ("confirmed", "cancel"): "cancelled",
    ("confirmed", "check_in"): "checked_in",
    ("confirmed", "miss"): "no_show",
    ("checked_in", "complete"): "completed",
}
DESIGN_STATES = [None, "held", "confirmed", "checked_in", "completed", "cancelled", "expired", "revoked", "no_show"]
DESIGN_EVENTS = ["hold", "hold_free", "pay", "expire", "cancel", "suspend", "check_in", "miss", "complete"]
# Walk the design's states and events and also whatever the code knows about, so that a
# transition added in code on a new state or event is walked (and refused by this test).
WALK_STATES = DESIGN_STATES + sorted(set(lifecycle.STATES) - set(DESIGN_STATES))
WALK_EVENTS = DESIGN_EVENTS + sorted(set(lifecycle.EVENTS) - set(DESIGN_EVENTS))


@pytest.mark.parametrize("state", WALK_STATES)
@pytest.mark.parametrize("event", WALK_EVENTS)
def test_transition_table_allows_exactly_the_designed_pairs(state, event):
    if (state, event) in DESIGN_TRANSITIONS:
        assert lifecycle.next_state(state, event) == DESIGN_TRANSITIONS[(state, event)]
    else:
        with pytest.raises(TransitionRefused):
            lifecycle.next_state(state, event)


def test_code_knows_exactly_the_designed_states_and_events():
    assert set(lifecycle.EVENTS) == set(DESIGN_EVENTS)
    assert set(lifecycle.STATES) == set(DESIGN_STATES) - {None}
    assert set(STORED_STATES) == set(DESIGN_STATES) - {None}  # the database check constraint


async def test_apply_walks_every_pair_on_a_stored_booking(db, clock, client, world):
    """`lifecycle.apply` on a real row: each designed pair moves the row and writes one event
    row; every other pair is refused and leaves the row as it was."""
    r = await _hold(client, world["token"], world["slot"], world["patient"])
    booking_id = r.json()["id"]
    for state in WALK_STATES:
        if state is None:
            continue  # a booking is born by `record_creation`; covered by next_state above
        for event in WALK_EVENTS:
            async with db.begin() as s:
                await s.execute(update(Booking).where(Booking.id == booking_id).values(state=state))
            async with db.begin() as s:
                booking = await s.get(Booking, booking_id)
                events_before = await s.scalar(select(func.count()).select_from(BookingEvent))
                expected = DESIGN_TRANSITIONS.get((state, event))
                if expected is None:
                    with pytest.raises(TransitionRefused):
                        await lifecycle.apply(s, booking, event, actor=Actor.system(), now=clock.now())
                else:
                    await lifecycle.apply(s, booking, event, actor=Actor.system(), now=clock.now())
            async with db.read() as s:
                stored = await s.get(Booking, booking_id)
                events_after = await s.scalar(select(func.count()).select_from(BookingEvent))
                last = await s.scalar(select(BookingEvent).order_by(BookingEvent.id.desc()).limit(1))
            if expected is None:
                assert (stored.state, events_after) == (state, events_before), (state, event)
            else:
                assert stored.state == expected, (state, event)
                assert events_after == events_before + 1
                assert (last.from_state, last.to_state) == (state, expected)


async def test_apply_refuses_when_the_state_changed_underneath(db, clock, client, world):
    r = await _hold(client, world["token"], world["slot"], world["patient"])
    async with db.begin() as s:
        stale = await s.get(Booking, r.json()["id"])
    await _confirm(db, clock, stale.id)
    async with db.begin() as s:
        with pytest.raises(TransitionRefused):
            await lifecycle.apply(s, stale, "cancel", actor=Actor.system(), now=clock.now())


# --- holds expire by time (I4) --------------------------------------------------------------

async def test_expired_hold_frees_capacity_immediately_and_cannot_be_confirmed(client, db, clock, world):
    first = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    acc2, tok2 = await make_account(db, clock.now())
    p2 = await make_patient(db, clock.now(), acc2)
    assert (await _hold(client, tok2, world["slot"], p2)).json()["code"] == "slot_sold_out"

    clock.advance(minutes=15)  # exactly the deadline; no job runs
    avail = (await client.get(f"/api/v1/bookings/{first['id']}", headers=auth(world["token"]))).json()
    assert avail["state"] == "expired" and avail["allowed_actions"] == []
    with pytest.raises(HoldExpired):
        await _confirm(db, clock, first["id"])
    await app_gate_forget(client, world["slot"])
    second = await _hold(client, tok2, world["slot"], p2)
    assert second.status_code == 201 and second.json()["visit_no"] == 1
    async with db.read() as s:
        old = await s.get(Booking, first["id"])
    assert old.state == "expired"  # the claimer recorded the lapse in its own transaction


async def app_gate_forget(client, slot_id):
    # the sold-out answer above was cached for a second; a real client would simply retry
    await client._transport.app.state.gate.forget(slot_id)


async def test_confirm_before_deadline_then_seat_is_kept(client, db, clock, world):
    b = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    clock.advance(minutes=14, seconds=59)
    confirmed = await _confirm(db, clock, b["id"])
    assert confirmed.state == "confirmed"
    clock.advance(minutes=30)
    r = (await client.get(f"/api/v1/bookings/{b['id']}", headers=auth(world["token"]))).json()
    assert r["state"] == "confirmed" and r["visit_no"] == 1
    async with db.read() as s:
        topics = set(await s.scalars(select(OutboxMessage.topic)))
    assert "notify.booking_confirmed" in topics


async def test_sweeper_records_lapsed_holds(client, db, clock, world):
    b = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    clock.advance(minutes=16)
    async with db.begin() as s:
        assert await actions.do_expire_due(s, now=clock.now()) == 1
    async with db.read() as s:
        events = [(e.from_state, e.to_state) for e in await s.scalars(
            select(BookingEvent).where(BookingEvent.booking_id == b["id"]).order_by(BookingEvent.id))]
    assert events == [(None, "held"), ("held", "expired")]


# --- cancellation --------------------------------------------------------------------------

async def test_hold_can_be_cancelled_any_time_and_frees_the_seat(client, db, clock, world):
    b = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    r = await client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=auth(world["token"]))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    acc2, tok2 = await make_account(db, clock.now())
    assert (await _hold(client, tok2, world["slot"], await make_patient(db, clock.now(), acc2))).status_code == 201


async def test_cancel_deadline_is_midnight_before_the_visit_day_in_shanghai(client, db, clock, world):
    b = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    await _confirm(db, clock, b["id"])
    assert b["cancel_deadline"] == "2026-11-21T00:00:00+08:00"  # midnight starting the visit day, local
    clock.set(dt.datetime(2026, 11, 20, 16, 0, tzinfo=UTC))
    r = await client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=auth(world["token"]))
    assert r.status_code == 409 and r.json()["code"] == "cancel_deadline_passed"
    assert "2026-11-21 00:00" in r.json()["detail"]
    clock.set(dt.datetime(2026, 11, 20, 15, 59, 59, tzinfo=UTC))
    r = await client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=auth(world["token"]))
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    async with db.read() as s:
        topics = set(await s.scalars(select(OutboxMessage.topic)))
    assert {"notify.booking_cancelled", "payment.refund"} <= topics


async def test_other_account_cannot_see_or_cancel(client, db, clock, world):
    b = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    _, other = await make_account(db, clock.now())
    assert (await client.get(f"/api/v1/bookings/{b['id']}", headers=auth(other))).status_code == 404
    assert (await client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=auth(other))).status_code == 404


# --- hospital side -------------------------------------------------------------------------

async def test_suspension_revokes_live_bookings_with_refund_rows(client, db, clock, world):
    b = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    await _confirm(db, clock, b["id"])
    _, admin = await make_staff(db, clock.now(), role="scheduler", hospital_id=world["hospital"])
    r = await client.post(f"/api/v1/staff/schedules/{world['schedule']}/suspend", json={"reason": "医生外出会诊"},
                          headers=auth(admin))
    assert r.status_code == 200 and r.json()["revoked"] == [b["id"]]
    got = (await client.get(f"/api/v1/bookings/{b['id']}", headers=auth(world["token"]))).json()
    assert got["state"] == "revoked" and got["state_reason"] == "医生外出会诊"
    async with db.read() as s:
        rows = {(m.topic, m.dedupe_key) for m in await s.scalars(select(OutboxMessage))}
    assert ("payment.refund", f"payment.refund:{b['id']}") in rows
    assert ("notify.booking_revoked", f"notify.booking_revoked:{b['id']}") in rows
    acc2, tok2 = await make_account(db, clock.now())
    r = await _hold(client, tok2, world["slot"], await make_patient(db, clock.now(), acc2))
    assert r.json()["code"] == "schedule_suspended"


async def test_staff_of_another_hospital_cannot_suspend(client, db, clock, world):
    other = await make_hospital(db, clock.now(), name="别的医院")
    _, tok = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=other)
    r = await client.post(f"/api/v1/staff/schedules/{world['schedule']}/suspend", json={"reason": "x"},
                          headers=auth(tok))
    assert r.status_code == 404


async def test_check_in_by_code_on_the_visit_day_then_complete(client, db, clock, world):
    b = (await _hold(client, world["token"], world["slot"], world["patient"])).json()
    await _confirm(db, clock, b["id"])
    _, desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=world["hospital"])
    url = f"/api/v1/staff/hospitals/{world['hospital']}/check-in"
    r = await client.post(url, json={"booking_code": b["booking_code"]}, headers=auth(desk))
    assert r.json()["code"] == "check_in_refused"  # two days early
    clock.set(dt.datetime(2026, 11, 21, 0, 30, tzinfo=UTC))  # 08:30 on the visit day
    r = await client.post(url, json={"booking_code": b["booking_code"]}, headers=auth(desk))
    assert r.status_code == 200 and r.json()["state"] == "checked_in"
    roster = (await client.get(f"/api/v1/staff/hospitals/{world['hospital']}/roster?date=2026-11-21",
                               headers=auth(desk))).json()
    assert [(e["visit_no"], e["state"], e["patient_name"]) for e in roster] == [(1, "checked_in", "王*")]
    r = await client.post(f"/api/v1/staff/bookings/{b['id']}/complete", headers=auth(desk))
    assert r.json()["state"] == "completed" and r.json()["fhir_status"] == "fulfilled"


async def test_no_shows_count_toward_a_restriction_that_staff_can_lift(client, db, clock, world):
    now = clock.now()
    booking_ids = []
    for i in range(3):
        _, slots = await make_schedule(db, now, hospital_id=world["hospital"], department_id=world["department"],
                                       doctor_id=world["doctor"], day=DAY + dt.timedelta(days=i + 1), capacity=2)
        b = (await _hold(client, world["token"], slots[0], world["patient"])).json()
        await _confirm(db, clock, b["id"])
        booking_ids.append(b["id"])
    clock.set(dt.datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
    async with db.begin() as s:
        assert await hospital_actions.do_mark_no_shows(s, now=clock.now()) == 3
    _, slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                   doctor_id=world["doctor"], day=dt.date(2026, 11, 26))
    r = await _hold(client, world["token"], slots[0], world["patient"])
    assert r.json()["code"] == "restricted_until" and "2026-12-24" in r.json()["detail"]
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world["hospital"])
    listed = (await client.get(f"/api/v1/staff/hospitals/{world['hospital']}/restrictions", headers=auth(admin))).json()
    assert len(listed) == 1 and listed[0]["strikes"] == 3
    r = await client.post(f"/api/v1/staff/restrictions/{listed[0]['id']}/lift", json={"reason": "已核实为系统误判"},
                          headers=auth(admin))
    assert r.status_code == 200 and r.json()["lifted_at"]
    assert (await _hold(client, world["token"], slots[0], world["patient"])).status_code == 201
    async with db.read() as s:
        assert await s.scalar(select(Restriction.lift_reason)) == "已核实为系统误判"


async def test_patient_with_a_live_booking_cannot_be_removed(client, world):
    await _hold(client, world["token"], world["slot"], world["patient"])
    r = await client.delete(f"/api/v1/me/patients/{world['patient']}", headers=auth(world["token"]))
    assert r.status_code == 409 and r.json()["code"] == "patient_has_bookings"
