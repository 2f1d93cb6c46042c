"""停诊 and the 候补 queue: lifting a 停诊 that revoked bookings publishes the session again,
the revoked bookings stay revoked, and the seats they freed go to the queue's head first, in
queue order (to open booking only when nobody waits); the queue's patients are told when it
pauses and when it resumes."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from guahao.booking import errors as booking_errors
from guahao.booking import hospital_actions
from guahao.booking.lifecycle import Actor
from guahao.booking.models import Booking
from guahao.outbox.registry import JobContext
from guahao.scheduling.models import Schedule
from tests.builders import auth, make_staff
from tests.waitlist_support import (
    booking,
    check,
    confirm,
    entries,
    hold,
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


async def _suspend(db, clock, schedule_id: int) -> list[int]:
    async with db.begin() as s:
        revoked = await hospital_actions.do_suspend(s, schedule_id=schedule_id, hospital_id=None, reason="医生出差",
                                                    actor=Actor("staff", 1), now=clock.now())
    return [b.id for b in revoked]


async def _scheduler(db, clock, world) -> dict:
    _, token = await make_staff(db, clock.now(), role="scheduler", hospital_id=world["hospital"])
    return auth(token)


async def _booking_states(db, ids: list[int]) -> list[str]:
    async with db.read() as s:
        found = {b.id: b.state for b in await s.scalars(select(Booking).where(Booking.id.in_(ids)))}
    return [found[i] for i in ids]


async def test_lifting_a_stop_that_revoked_paid_bookings_offers_the_seats_to_the_queue_in_order(
        client, db, clock, ctx):
    world = await make_world(db, clock, capacity=3)
    sold = await sell_out(db, clock, world)  # three paid bookings
    queue = await waiters(db, clock, world, 3)
    revoked = await _suspend(db, clock, world["schedule"])
    assert sorted(revoked) == sorted(b for *_, b in sold)
    await run_jobs(ctx)
    assert await states(db, world["schedule"]) == ["waiting"] * 3  # paused: no offers while suspended

    resumed = await client.post(f"/api/v1/staff/schedules/{world['schedule']}/resume",
                                headers=await _scheduler(db, clock, world))
    assert resumed.status_code == 200, resumed.text
    assert resumed.json() == {"schedule_id": world["schedule"], "status": "published", "revoked": 3}
    outsider, _, outsider_patient = await new_patient(db, clock)  # refreshes before the promoter runs
    with pytest.raises(booking_errors.SlotSoldOut):
        await hold(db, clock, outsider, outsider_patient, world["slots"][0])
    await run_jobs(ctx)

    rows = await entries(db, world["schedule"])
    assert [(e.position, e.state, e.patient_id) for e in rows] == [
        (1, "offered", queue[0][2]), (2, "offered", queue[1][2]), (3, "offered", queue[2][2])]
    offers = [await booking(db, e.offer_booking_id) for e in rows]
    assert [o.state for o in offers] == ["held"] * 3
    assert [o.id for o in offers] == sorted(o.id for o in offers)  # offered in queue order
    assert await _booking_states(db, revoked) == ["revoked"] * 3  # refunded and told: they stay so
    async with db.read() as s:
        assert await s.scalar(select(Schedule.status).where(Schedule.id == world["schedule"])) == "published"
    await confirm(db, clock, offers[0].id)  # an offer is paid like any hold
    await check(db, clock)


async def test_lifting_a_stop_with_nobody_waiting_returns_the_seats_to_open_booking(client, db, clock, ctx):
    world = await make_world(db, clock, capacity=2)
    sold = await sell_out(db, clock, world)
    await _suspend(db, clock, world["schedule"])
    account, _, patient = await new_patient(db, clock)
    with pytest.raises(booking_errors.ScheduleSuspended):
        await hold(db, clock, account, patient, world["slots"][0])
    resumed = await client.post(f"/api/v1/staff/schedules/{world['schedule']}/resume",
                                headers=await _scheduler(db, clock, world))
    assert resumed.status_code == 200 and resumed.json()["revoked"] == 2
    await run_jobs(ctx)  # the promoter finds nobody and leaves the seats open
    first = await hold(db, clock, account, patient, world["slots"][0])
    other, _, other_patient = await new_patient(db, clock)
    second = await hold(db, clock, other, other_patient, world["slots"][0])
    assert await _booking_states(db, [first, second]) == ["held", "held"]
    assert await _booking_states(db, [b for *_, b in sold]) == ["revoked", "revoked"]


async def test_lifting_a_stop_twice_is_a_clear_refusal(client, db, clock):
    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    await _suspend(db, clock, world["schedule"])
    headers = await _scheduler(db, clock, world)
    path = f"/api/v1/staff/schedules/{world['schedule']}/resume"
    assert (await client.post(path, headers=headers)).status_code == 200
    again = await client.post(path, headers=headers)
    assert again.status_code == 409
    assert again.json()["code"] == "schedule_not_suspended"
    assert "未停诊" in again.json()["detail"]  # 该排班未停诊,无需恢复。


async def test_an_offer_revoked_by_the_stop_gets_its_seat_back_when_it_is_lifted(client, db, clock, ctx):
    """The queue's only live entry held an offer: the 停诊 revokes it; once the waitlist has read
    the revocation (the sweep, or the pause job) the entry waits at its old place, and lifting
    the 停诊 offers it the seat again before anyone else can take it."""
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 1)
    async with db.begin() as s:
        from guahao.booking import actions as booking_actions
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    await run_jobs(ctx)
    [entry] = await entries(db, world["schedule"])
    first_offer = entry.offer_booking_id
    assert entry.state == "offered"
    await _suspend(db, clock, world["schedule"])
    from guahao.outbox.registry import HANDLERS
    await HANDLERS["waitlist.sweep"](ctx, {})
    assert await states(db, world["schedule"]) == ["waiting"]

    await client.post(f"/api/v1/staff/schedules/{world['schedule']}/resume", headers=await _scheduler(db, clock, world))
    outsider, _, outsider_patient = await new_patient(db, clock)
    with pytest.raises(booking_errors.SlotSoldOut):
        await hold(db, clock, outsider, outsider_patient, world["slots"][0])
    await run_jobs(ctx)
    [entry] = await entries(db, world["schedule"])
    assert (entry.state, entry.patient_id) == ("offered", queue[0][2])
    assert entry.offer_booking_id != first_offer and (await booking(db, first_offer)).state == "revoked"
    await check(db, clock)


NOTIFY = ("notify.waitlist_paused", "notify.waitlist_resumed", "notify.waitlist_offer")


async def test_a_stop_tells_everyone_waiting_once_and_its_lifting_tells_them_it_runs_again(
        app, client, db, clock, ctx):
    import guahao.notifications.jobs  # noqa: F401  (registers the notify.* handlers)
    from guahao.notifications.port import from_providers
    from guahao.outbox.registry import HANDLERS

    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 3)
    ids = [q[3] for q in queue]
    await _suspend(db, clock, world["schedule"])
    [paused_job] = await outbox_topics(db, "schedule.suspended")
    await run_jobs(ctx)
    await HANDLERS["schedule.suspended"](ctx, paused_job)  # a duplicate delivery tells nobody twice
    paused = await outbox_topics(db, "notify.waitlist_paused")
    assert [m["entry_id"] for m in paused] == ids
    assert {m["suspension"] for m in paused} == {paused_job["suspension"]}
    await run_jobs(ctx, topics=NOTIFY)
    await run_jobs(ctx, topics=NOTIFY)
    sent = from_providers(ctx.providers).sent
    assert [m.template for m in sent if m.template.startswith("waitlist_")] == ["waitlist_paused"] * 3
    assert "候补已暂停" in sent[-1].text and "排队位置保留" in sent[-1].text

    clock.advance(minutes=30)
    lifted = await client.post(f"/api/v1/staff/schedules/{world['schedule']}/resume",
                               headers=await _scheduler(db, clock, world))
    assert lifted.status_code == 200, lifted.text
    await run_jobs(ctx)
    [resumed_job] = await outbox_topics(db, "schedule.resumed")
    await HANDLERS["schedule.resumed"](ctx, resumed_job)  # again: nothing new
    assert await states(db, world["schedule"]) == ["offered", "waiting", "waiting"]
    resumed = await outbox_topics(db, "notify.waitlist_resumed")
    assert [m["entry_id"] for m in resumed] == ids[1:]  # the head has its offer's SMS instead
    await run_jobs(ctx, topics=NOTIFY)
    by_template = {}
    for m in from_providers(ctx.providers).sent:
        by_template.setdefault(m.template, []).append(m)
    assert len(by_template["waitlist_offer"]) == 1 and len(by_template["waitlist_paused"]) == 3
    assert [m.params["ahead"] for m in by_template["waitlist_resumed"]] == ["0", "1"]
    assert "已恢复出诊" in by_template["waitlist_resumed"][0].text

    clock.advance(minutes=5)  # a second 停诊 of the same session is news again
    await _suspend(db, clock, world["schedule"])
    await run_jobs(ctx)
    again = await outbox_topics(db, "notify.waitlist_paused")
    assert [m["entry_id"] for m in again[3:]] == ids  # the revoked offer is back at the head
    assert len({m["suspension"] for m in again}) == 2
    await check(db, clock)


async def test_a_stop_lifted_before_the_waitlist_heard_of_it_tells_nobody(client, db, clock, ctx):
    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    await waiters(db, clock, world, 2)
    await _suspend(db, clock, world["schedule"])
    lifted = await client.post(f"/api/v1/staff/schedules/{world['schedule']}/resume",
                               headers=await _scheduler(db, clock, world))
    assert lifted.status_code == 200
    await run_jobs(ctx)
    assert await outbox_topics(db, "notify.waitlist_paused") == []
    assert await outbox_topics(db, "notify.waitlist_resumed") == []
    assert await states(db, world["schedule"]) == ["offered", "waiting"]
    await check(db, clock)
