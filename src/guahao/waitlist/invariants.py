"""The waitlist invariants, read back from the database (the independent audit every
waitlist test ends with; `ops.invariants.check_all` runs it with I1-I5). Sentences without
personal data; [] when all is well.

W1 one live entry per (schedule, person) · W2 at most K live entries per person and hospital ·
W3 an offer is one booking of the entry's own person and schedule, offered to one entry ·
W4 no overtaking: no entry ever offered a seat while one ahead of it was still waiting ·
W5 the schedule's "someone waits" flag (which shuts open holds out) matches the entries ·
W7 an offer's pay deadline is within the booking window, and offers happen before the cutoff ·
W8 a suspended schedule has no running offer.
"""
from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import queries as booking_queries
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import queries
from guahao.waitlist import rules as waitlist_rules
from guahao.waitlist.models import LIVE_STATES


async def check(session: AsyncSession, *, now: dt.datetime) -> list[str]:
    problems: list[str] = []
    rows = await queries.all_entries(session)
    live = [e for e in rows if e.state in LIVE_STATES]
    problems += [f"W1: person {p} has {n} live entries on schedule {s}"
                 for (s, p), n in Counter((e.schedule_id, e.person_id) for e in live).items() if n > 1]
    per_person = Counter((e.hospital_id, e.person_id) for e in live)
    limits: dict[int, int] = {}
    for (hospital, person), n in per_person.items():
        if hospital not in limits:
            limits[hospital] = (await waitlist_rules.get_rules(session, hospital)).max_entries_per_person
        if n > limits[hospital]:
            problems.append(f"W2: person {person} has {n} live entries at hospital {hospital} (limit {limits[hospital]})")
    offers = Counter(e.offer_booking_id for e in rows if e.offer_booking_id is not None)
    problems += [f"W3: booking {b} is the offer of {n} entries" for b, n in offers.items() if n > 1]
    statuses = await scheduling_service.statuses(session, {e.schedule_id for e in rows})
    by_schedule = defaultdict(list)
    for e in rows:
        by_schedule[e.schedule_id].append(e)
    for e in rows:
        if e.state == "offered" and e.offer_booking_id is None:
            problems.append(f"W3: entry {e.id} is offered without a booking")
        if e.offer_booking_id is not None:
            b = await booking_queries.get(session, e.offer_booking_id)
            ctx = b and await booking_queries.slot_context(session, b.slot_id)
            if b is None or b.person_id != e.person_id or ctx.schedule_id != e.schedule_id:
                problems.append(f"W3: entry {e.id}'s offer {e.offer_booking_id} is not its person's on its schedule")
            elif b.hold_expires_at is not None and b.hold_expires_at > ctx.closes_at:
                problems.append(f"W7: offer {b.id} runs past the booking window")
            elif (e.state == "offered" and statuses.get(e.schedule_id) == "suspended" and b.state == "held"
                  and (b.hold_expires_at is None or b.hold_expires_at > now)):
                problems.append(f"W8: entry {e.id} has a running offer on a suspended schedule")
        if e.offered_at is not None and e.offered_at > e.cutoff_at:
            problems.append(f"W7: entry {e.id} was offered a seat after its cutoff")
        if e.offered_at is not None and e.state != "waiting":
            overtaken = [o.id for o in by_schedule[e.schedule_id]
                         if o.state == "waiting" and o.offers == 0 and o.position < e.position]
            if overtaken:
                problems.append(f"W4: entry {e.id} was offered a seat while {overtaken} waited ahead of it")
    waiting = {e.schedule_id for e in rows if e.state == "waiting"}
    flagged = set(await scheduling_service.waitlist_flags(session))
    problems += [f"W5: schedule {s} has waiting entries but open holds are not shut out" for s in waiting - flagged]
    problems += [f"W5: schedule {s} shuts open holds out with nobody waiting" for s in flagged - waiting]
    return problems
