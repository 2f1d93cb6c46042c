"""The booking invariants I1-I4 (DESIGN.md section 5), read back from the database.

The database enforces them (seat rows, partial unique indexes, the state machine); this is
the independent audit that says so after a fault, a restore or a migration: every fault test
ends with it, and `guahao check` runs it against a live database. Returns the violations as
sentences without personal data ([] when all is well).
"""
from __future__ import annotations

import datetime as dt
from collections import Counter

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.models import LIVE_STATES, Booking, BookingEvent
from guahao.scheduling import seats


async def check(session: AsyncSession, *, now: dt.datetime) -> list[str]:
    problems: list[str] = []
    rows = await session.execute(select(Booking.id, Booking.state, Booking.hold_expires_at, Booking.slot_id,
                                        Booking.schedule_id, Booking.visit_no, Booking.person_id,
                                        Booking.department_id, Booking.visit_date))
    live, states = {}, {}
    for bid, state, until, slot, schedule, visit_no, person, department, day in rows:
        states[bid] = state
        lapsed = state == "held" and until is not None and until <= now
        if state in LIVE_STATES and not lapsed:
            live[bid] = (slot, schedule, visit_no, person, department, day)
    occupant_of: dict[int, tuple[int, int]] = {}  # booking -> (slot, visit number) of its seat
    for _schedule, slot, visit_no, booking in await seats.seat_facts(session, now):
        if booking is None:
            continue
        if booking in occupant_of:
            problems.append(f"I1: booking {booking} occupies two seats")
        occupant_of[booking] = (slot, visit_no)
    for bid, (slot, _schedule, visit_no, *_rest) in live.items():
        seat = occupant_of.get(bid)
        if seat is None and visit_no is not None:
            # a no-show keeps its number but not every live state needs a seat row (walk-ins
            # without one are not made); a live booking with a number must hold that seat
            problems.append(f"I1: live booking {bid} holds no seat")
        elif seat is not None and (seat[0] != slot or seat[1] != visit_no):
            problems.append(f"I1: booking {bid} is on slot {slot} no. {visit_no} but its seat is {seat}")
    for bid in occupant_of.keys() - live.keys():
        state = states.get(bid)
        if state != "no_show":  # a no-show keeps its number (its seat stays taken)
            problems.append(f"I1: seat held by booking {bid}, which is {state}")
    numbers = Counter((schedule, visit_no) for _s, schedule, visit_no, *_ in live.values() if visit_no is not None)
    problems += [f"I2: visit number {no} of schedule {sch} is given {n} times"
                 for (sch, no), n in numbers.items() if n > 1]
    people = Counter((person, department, day) for *_x, person, department, day in live.values())
    problems += [f"I3: person {p} has {n} live bookings in department {d} on {day}"
                 for (p, d, day), n in people.items() if n > 1]
    confirmations = await session.execute(
        select(BookingEvent.booking_id, BookingEvent.at, Booking.hold_expires_at)
        .join(Booking, Booking.id == BookingEvent.booking_id)
        .where(BookingEvent.from_state == "held", BookingEvent.to_state == "confirmed"))
    problems += [f"I4: booking {bid} was confirmed at {at:%Y-%m-%dT%H:%M:%S}, after its hold ended"
                 for bid, at, until in confirmations if until is not None and at >= until]
    return problems
