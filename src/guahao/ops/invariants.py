"""One audit of the invariants a database must satisfy (DESIGN.md section 5): the booking
invariants I1-I4 (booking/invariants.py), money I5 (payments/invariants.py) and the waitlist's
W1-W8 (waitlist/invariants.py). Used by the
fault and restore tests and by `guahao check` (an operator's audit after an incident or a
restore). I6 (HIS write-back) and I7 (idempotency) are properties of conversations, not of
one snapshot; their tests check them directly."""
from __future__ import annotations

import datetime as dt

from guahao.booking import invariants as booking_invariants
from guahao.core.db import Database
from guahao.payments.invariants import check_money
from guahao.waitlist import invariants as waitlist_invariants


async def check_all(db: Database, *, now: dt.datetime) -> list[str]:
    async with db.read() as session:
        problems = await booking_invariants.check(session, now=now)
        problems += [f"I5: {p}" for p in await check_money(session)]
        problems += await waitlist_invariants.check(session, now=now)
    return problems
