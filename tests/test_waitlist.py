"""候补 (waitlist): joining, offers to the head, pay window, lapse chain, 停诊, capacity, cutoff."""
from __future__ import annotations

import datetime as dt

import pytest

from guahao.booking import actions as booking_actions
from guahao.booking import errors as booking_errors
from guahao.booking import hospital_actions, suspensions
from guahao.booking.lifecycle import Actor
from guahao.outbox.registry import JobContext
from guahao.scheduling import capacity
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import actions as waitlist_actions
from guahao.waitlist import errors, promote
from tests.booking_builders import make_id_number
from tests.waitlist_support import (
    booking,
    check,
    confirm,
    entries,
    hold,
    join,
    make_world,
    new_patient,
    outbox_topics,
    run_jobs,
    sell_out,
    states,
    waiters,
)


@pytest.fixture
def ctx(app, settings, clock) -> JobContext:
    return JobContext(db=app.state.db, clock=clock, settings=settings, providers=app.state.providers)


async def test_a_schedule_with_free_seats_cannot_be_joined(db, clock):
    world = await make_world(db, clock, capacity=2)
    account, _, patient = await new_patient(db, clock)
    with pytest.raises(errors.SeatsAvailable):
        await join(db, clock, account, patient, world["schedule"])


async def test_a_cancelled_seat_goes_to_the_head_as_an_offer_not_to_open_booking(db, clock, ctx):
    world = await make_world(db, clock, capacity=2)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 3)
    account, _, patient, paid = sold[0]
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=account, booking_id=paid, now=clock.now())

    other, _, other_patient = await new_patient(db, clock)  # a refresher at the right moment
    with pytest.raises(booking_errors.SlotSoldOut):
        await hold(db, clock, other, other_patient, world["slots"][0])
    await run_jobs(ctx)

    assert await states(db, world["schedule"]) == ["offered", "waiting", "waiting"]
    head = (await entries(db, world["schedule"]))[0]
    offer = await booking(db, head.offer_booking_id)
    assert (offer.state, offer.patient_id) == ("held", queue[0][2])
    assert offer.hold_expires_at == clock.now() + dt.timedelta(minutes=30)
    assert [m["entry_id"] for m in await outbox_topics(db, "notify.waitlist_offer")] == [queue[0][3]]
    await confirm(db, clock, offer.id)  # paid: an ordinary confirmed booking
    async with db.begin() as s:
        await promote.do_promote(s, schedule_id=world["schedule"], now=clock.now())
    assert await states(db, world["schedule"]) == ["fulfilled", "waiting", "waiting"]
    await check(db, clock)


async def test_an_offer_chain_of_five_unpaid_offers_reaches_the_sixth(db, clock, ctx):
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 6)
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    await run_jobs(ctx)
    for i in range(5):
        assert (await states(db, world["schedule"]))[i] == "offered"
        clock.advance(minutes=31)  # unpaid: the pay window ends, the seat goes to the next
        await run_jobs(ctx)
        await check(db, clock)
    assert await states(db, world["schedule"]) == ["lapsed"] * 5 + ["offered"]
    last = (await entries(db, world["schedule"]))[5]
    await confirm(db, clock, last.offer_booking_id)
    await run_jobs(ctx)
    clock.advance(minutes=31)
    await run_jobs(ctx, topics=("waitlist.sweep", "waitlist.promote", "seats.freed"))
    async with db.begin() as s:
        await promote.do_promote(s, schedule_id=world["schedule"], now=clock.now())
    assert await states(db, world["schedule"]) == ["lapsed"] * 5 + ["fulfilled"]
    assert len(await outbox_topics(db, "notify.waitlist_offer")) == 6
    lapsed = [await booking(db, e.offer_booking_id) for e in (await entries(db, world["schedule"]))[:5]]
    assert all(b.strike_at is not None for b in lapsed)  # the hospital rule: a lapsed offer is a strike
    del queue
    await check(db, clock)


async def test_an_ineligible_head_is_skipped_with_a_reason_and_told(db, clock, ctx):
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 2)
    # the head books the same department that day with another doctor meanwhile
    doc2 = await __import__("tests.builders", fromlist=["make_doctor"]).make_doctor(
        db, world["hospital"], world["department"], name="李四")
    from tests.booking_builders import make_schedule
    _, slots2 = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                    doctor_id=doc2, day=dt.date(2026, 11, 21), capacity=3)
    await hold(db, clock, queue[0][0], queue[0][2], slots2[0])
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    await run_jobs(ctx)
    rows = await entries(db, world["schedule"])
    assert [(e.state, e.reason) for e in rows] == [("skipped", "duplicate_booking"), ("offered", None)]
    assert [m["entry_id"] for m in await outbox_topics(db, "notify.waitlist_skipped")] == [queue[0][3]]
    await check(db, clock)


async def test_one_person_in_two_accounts_is_one_entry(db, clock):
    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    id_number = make_id_number()
    a1, _, p1 = await new_patient(db, clock, id_number=id_number)
    a2, _, p2 = await new_patient(db, clock, id_number=id_number)
    await join(db, clock, a1, p1, world["schedule"])
    with pytest.raises(errors.AlreadyWaiting):
        await join(db, clock, a2, p2, world["schedule"])


async def test_at_most_k_live_entries_per_person(db, clock):
    world = await make_world(db, clock, capacity=1, max_entries_per_person=2)
    from tests.booking_builders import make_schedule
    from tests.builders import make_doctor
    schedules = [world["schedule"]]
    for i in range(2):
        doc = await make_doctor(db, world["hospital"], world["department"], name=f"医生{i}")
        schedules.append((await make_schedule(db, clock.now(), hospital_id=world["hospital"],
                                              department_id=world["department"], doctor_id=doc,
                                              day=dt.date(2026, 11, 21), capacity=1))[0])
    account, _, patient = await new_patient(db, clock)
    for sid in schedules:
        other, _, op = await new_patient(db, clock)
        async with db.read() as s:
            slot = (await scheduling_service.list_slots(s, sid, pool="platform"))[0].id
        await hold(db, clock, other, op, slot)
    await join(db, clock, account, patient, schedules[0])
    await join(db, clock, account, patient, schedules[1])
    with pytest.raises(errors.TooManyEntries):
        await join(db, clock, account, patient, schedules[2])


async def test_an_unverified_patient_cannot_join(db, clock):
    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    account, _, patient = await new_patient(db, clock, verified=False)
    with pytest.raises(booking_errors.PatientNotVerified):
        await join(db, clock, account, patient, world["schedule"])


async def test_suspension_during_an_offer_pauses_the_queue_and_keeps_its_order(db, clock, ctx):
    world = await make_world(db, clock, capacity=2)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 10)
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    await run_jobs(ctx)
    assert (await states(db, world["schedule"]))[0] == "offered"
    async with db.begin() as s:
        await hospital_actions.do_suspend(s, schedule_id=world["schedule"], hospital_id=None, reason="医生出差",
                                          actor=Actor("staff", 1), now=clock.now())
    await run_jobs(ctx)
    async with db.begin() as s:
        assert await promote.do_promote(s, schedule_id=world["schedule"], now=clock.now()) == []
    assert await states(db, world["schedule"]) == ["waiting"] * 10  # the revoked offer is back at the head
    await check(db, clock)
    async with db.begin() as s:  # the 停诊 is lifted; the promoter runs in the same transaction here
        await suspensions.do_resume(s, schedule_id=world["schedule"], hospital_id=None, staff_id=None, now=clock.now())
        offered = await promote.do_promote(s, schedule_id=world["schedule"], now=clock.now())
    assert [e.id for e in offered] == [queue[0][3], queue[1][3]]  # both freed seats, in the old order
    await check(db, clock)


async def test_added_seats_go_to_the_queue_in_one_run(db, clock, ctx):
    world = await make_world(db, clock, capacity=2)
    await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 8)
    async with db.begin() as s:
        schedule = await scheduling_service.lock_schedule(s, world["schedule"])
        slots = await scheduling_service.list_slots(s, schedule.id)
        await capacity.do_change_capacity(s, schedule, slots, capacities={"platform": 7}, now=clock.now())
    await run_jobs(ctx)
    assert await states(db, world["schedule"]) == ["offered"] * 5 + ["waiting"] * 3
    assert len(queue) == 8
    await check(db, clock)


async def test_the_cutoff_closes_the_queue_with_a_notice(db, clock, ctx):
    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 3)
    clock.set(dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC))  # 23:00 the day before, Shanghai
    async with db.begin() as s:
        await promote.do_promote(s, schedule_id=world["schedule"], now=clock.now())
    assert await states(db, world["schedule"]) == ["closed"] * 3
    assert sorted(m["entry_id"] for m in await outbox_topics(db, "notify.waitlist_closed")) == sorted(
        q[3] for q in queue)
    account, _, patient = await new_patient(db, clock)
    with pytest.raises(errors.WaitlistClosed):
        await join(db, clock, account, patient, world["schedule"])
    await check(db, clock)


async def test_an_offer_made_at_night_runs_from_the_morning(db, clock, ctx):
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    await waiters(db, clock, world, 1)
    clock.set(dt.datetime(2026, 11, 19, 17, 0, tzinfo=dt.UTC))  # 01:00 in Shanghai
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    await run_jobs(ctx)
    offer = await booking(db, (await entries(db, world["schedule"]))[0].offer_booking_id)
    assert offer.hold_expires_at == dt.datetime(2026, 11, 19, 23, 30, tzinfo=dt.UTC)  # 07:30 Shanghai


async def test_leaving_with_a_running_offer_passes_it_on_without_a_strike(db, clock, ctx):
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 2)
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    await run_jobs(ctx)
    async with db.begin() as s:
        await waitlist_actions.do_leave(s, account_id=queue[0][0], entry_id=queue[0][3], now=clock.now())
    rows = await entries(db, world["schedule"])
    assert [e.state for e in rows] == ["left", "offered"]
    declined = await booking(db, rows[0].offer_booking_id)
    assert (declined.state, declined.strike_at) == ("cancelled", None)
    await check(db, clock)


async def test_offer_skip_and_cutoff_are_told_by_sms_once_each(app, db, clock, ctx):
    import guahao.notifications.jobs  # noqa: F401  (registers the notify.* handlers)
    from guahao.notifications.port import from_providers

    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 3)
    async with db.begin() as s:  # the head is restricted by the time its turn comes
        from guahao.booking.models import Restriction
        s.add(Restriction(person_id=(await entries(db, world["schedule"]))[0].person_id,
                          hospital_id=world["hospital"], starts_at=clock.now(),
                          until=clock.now() + dt.timedelta(days=30), reason="test", strikes=3))
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    await run_jobs(ctx)
    notify = ("notify.waitlist_offer", "notify.waitlist_skipped", "notify.waitlist_closed")
    await run_jobs(ctx, topics=notify)
    clock.set(dt.datetime(2026, 11, 20, 15, 0, tzinfo=dt.UTC))  # the cutoff: the third is told
    async with db.begin() as s:
        await promote.do_promote(s, schedule_id=world["schedule"], now=clock.now())
    await run_jobs(ctx, topics=notify)
    await run_jobs(ctx, topics=notify)  # nothing twice
    sent = from_providers(ctx.providers).sent
    waitlist_sms = [m.template for m in sent if m.template.startswith("waitlist_")]
    assert sorted(waitlist_sms) == ["waitlist_closed", "waitlist_offer", "waitlist_skipped"]
    assert [(e.state, e.reason) for e in await entries(db, world["schedule"])] == [
        ("skipped", "restricted_until"), ("lapsed", "offer_lapsed"), ("closed", "cutoff")]
    assert len(queue) == 3


async def test_a_hospital_admin_sets_the_waitlist_rules_and_joins_follow_them(client, db, clock):
    from tests.builders import auth, make_staff

    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world["hospital"])
    _, desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=world["hospital"])
    path = f"/api/v1/staff/hospitals/{world['hospital']}/waitlist-rules"
    assert (await client.get(path, headers=auth(desk))).json()["max_entries_per_person"] == 3
    assert (await client.put(path, json={"offer_minutes": 20}, headers=auth(desk))).status_code == 403
    answer = await client.put(path, json={"offer_minutes": 20, "cutoff_minutes_before_visit_day": 600},
                              headers=auth(admin))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["offer_minutes"], answer.json()["max_entries_per_person"]) == (20, 3)
    account, token, patient = await new_patient(db, clock)
    joined = await client.post("/api/v1/waitlist", json={"schedule_id": world["schedule"], "patient_id": patient},
                               headers=auth(token))
    assert joined.status_code == 201, joined.text
    assert joined.json()["cutoff_at"] == "2026-11-20T14:00:00+08:00"  # 10 hours before the visit day
    assert joined.json()["ahead"] == 0
    queue = await client.get(f"/api/v1/staff/schedules/{world['schedule']}/waitlist", headers=auth(desk))
    assert [(r["position"], r["state"], r["patient_name"]) for r in queue.json()] == [(1, "waiting", "王*")]
    del account
