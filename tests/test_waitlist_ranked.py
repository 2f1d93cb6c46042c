"""The ranked join (a draw's losers, waitlist.actions.do_join_ranked): set-based, it must give
every entrant the answer `do_join` would give one by one, in the given order."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from guahao.booking.models import Restriction
from guahao.patients.models import Patient
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import actions as waitlist_actions
from tests.booking_builders import make_id_number, make_schedule
from tests.builders import make_doctor
from tests.waitlist_support import DAY, entries, hold, join, make_world, new_patient, sell_out


async def _person(db, patient_id: int) -> int:
    async with db.read() as s:
        return await s.scalar(select(Patient.person_id).where(Patient.id == patient_id))


async def _other_schedule_slot(db, clock, world, name: str) -> tuple[int, int]:
    doc = await make_doctor(db, world["hospital"], world["department"], name=name)
    sid, _ = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=world["department"],
                                 doctor_id=doc, day=DAY, capacity=1)
    async with db.read() as s:
        return sid, (await scheduling_service.list_slots(s, sid, pool="platform"))[0].id


async def test_ranked_join_refuses_each_entrant_as_a_join_would_and_keeps_the_order(db, clock):
    world = await make_world(db, clock, capacity=1, max_entries_per_person=2)
    sold = await sell_out(db, clock, world, paid=False)
    elsewhere = [await _other_schedule_slot(db, clock, world, f"医生{i}") for i in range(2)]
    for _sid, slot in elsewhere:  # sold out too, so that people can wait there
        other, _, op = await new_patient(db, clock)
        await hold(db, clock, other, op, slot)

    ok1 = await new_patient(db, clock)
    stranger = await new_patient(db, clock)  # asks with another account's patient
    unverified = await new_patient(db, clock, verified=False)
    restricted = await new_patient(db, clock)
    async with db.begin() as s:
        s.add(Restriction(person_id=await _person(db, restricted[2]), hospital_id=world["hospital"],
                          starts_at=clock.now(), until=clock.now() + dt.timedelta(days=30), reason="test", strikes=3))
    waiting_here = await new_patient(db, clock)
    await join(db, clock, waiting_here[0], waiting_here[2], world["schedule"])
    one_elsewhere = await new_patient(db, clock)  # one live entry of K = 2: may still join
    await join(db, clock, one_elsewhere[0], one_elsewhere[2], elsewhere[0][0])
    full = await new_patient(db, clock)  # K live entries already
    for sid, _slot in elsewhere:
        await join(db, clock, full[0], full[2], sid)
    twin_number = make_id_number()
    twin_a = await new_patient(db, clock, id_number=twin_number)
    twin_b = await new_patient(db, clock, id_number=twin_number)  # the same person in another account
    ok2 = await new_patient(db, clock)

    entrants = [(ok1[0], ok1[2]), (stranger[0], ok1[2]), (unverified[0], unverified[2]),
                (restricted[0], restricted[2]), (sold[0][0], sold[0][2]), (waiting_here[0], waiting_here[2]),
                (one_elsewhere[0], one_elsewhere[2]), (full[0], full[2]), (twin_a[0], twin_a[2]),
                (twin_b[0], twin_b[2]), (ok2[0], ok2[2])]
    async with db.begin() as s:
        results = await waitlist_actions.do_join_ranked(s, schedule_id=world["schedule"], entrants=entrants,
                                                        now=clock.now())
    assert [(r.account_id, r.patient_id) for r in results] == entrants
    assert [r.code for r in results] == [
        None, "not_found", "patient_not_verified", "restricted_until", "waitlist_already_booked",
        "waitlist_duplicate", None, "waitlist_limit", None, "waitlist_duplicate", None]
    queued = await entries(db, world["schedule"])
    accepted = [r for r in results if r.entry_id is not None]
    # the queue: whoever waited before, then the accepted entrants in the given order, ids as reported
    assert [(e.id, e.patient_id) for e in queued[1:]] == [(r.entry_id, r.patient_id) for r in accepted]
    assert queued[0].patient_id == waiting_here[2]
    assert [e.position for e in queued] == sorted(e.position for e in queued)
    assert all(e.state == "waiting" for e in queued)
