"""Settling a draw when the losers who asked for 候补 cannot be queued (the hospital's waitlist
is off, or the schedule was suspended): the draw still settles and opens what is left, and
nobody is queued (before, the settling transaction failed and the schedule stayed in draw
mode, refusing every hold, with each rerun failing the same way)."""
from __future__ import annotations

from sqlalchemy import select, update

from guahao.draw import entries as draw_entries
from guahao.scheduling.models import Schedule
from guahao.waitlist import queries as waitlist_queries
from guahao.waitlist import rules as waitlist_rules
from tests.draw_support import draw_world, entries, patients, run_draw


async def _enter_all(db, clock, world, people) -> None:
    clock.set(world.release_at)
    for _t, account_id, patient in people:
        async with db.begin() as s:
            await draw_entries.do_enter(s, account_id=account_id, patient_id=patient, schedule_id=world.schedule_id,
                                        waitlist_opt_in=True, arrived_at=clock.now(), now=clock.now())


async def _release_mode(db, schedule_id: int) -> str:
    async with db.read() as s:
        return await s.scalar(select(Schedule.release_mode).where(Schedule.id == schedule_id))


async def test_losers_who_opted_in_at_a_hospital_without_waitlist_do_not_stop_the_draw(db, clock):
    world = await draw_world(db, clock, capacity=1)
    async with db.begin() as s:
        await waitlist_rules.do_set_rules(s, world.hospital_id, now=clock.now(), enabled=False)
    await _enter_all(db, clock, world, await patients(db, clock, 3))
    assert await run_draw(db, clock, world) == "allocated"
    assert sorted(e.outcome for e in await entries(db, world)) == ["lost", "lost", "won"]
    assert await _release_mode(db, world.schedule_id) == "drawn"
    async with db.read() as s:
        assert await waitlist_queries.all_entries(s, world.schedule_id) == []


async def test_a_suspended_schedule_settles_with_opted_in_losers(db, clock):
    world = await draw_world(db, clock, capacity=2)
    people = await patients(db, clock, 2)
    await _enter_all(db, clock, world, people)
    async with db.begin() as s:
        await s.execute(update(Schedule).where(Schedule.id == world.schedule_id).values(status="suspended"))
    assert await run_draw(db, clock, world) == "allocated"
    assert [(e.outcome, e.reason) for e in await entries(db, world)] == [("lost", "schedule_suspended")] * 2
    async with db.read() as s:
        assert await waitlist_queries.all_entries(s, world.schedule_id) == []
