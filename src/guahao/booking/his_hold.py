"""The realtime hold (DESIGN.md section 6, `realtime`): the hospital's HIS decides every hold.

The sequence (booking/hold_flow.py runs it; no network call inside a database transaction):
(a) `do_hold` records the attempt in one transaction: a held booking with his_state
    'pending', its seat and every usual check (I1-I3 hold locally as always); the
    Idempotency-Key is left *in flight* (core/idempotency.py), not answered;
(b) with nothing open, the port `HisHolds.lock` asks the HIS to lock a number of the slot's
    band for our order id (the booking id: every HIS call about it is idempotent);
(c) `do_record_lock_answer` records the answer in one transaction with the key's final
    answer: locked → his_state 'locked', the hold is acknowledged; refused (the HIS's pool is
    full) → the booking ends and the patient gets `slot_sold_out`; unavailable → the booking
    ends and the answer is `his_unavailable`; unknown even after asking the HIS about the
    order → the booking ends, the lock (if it exists) is released through the outbox
    (`his.lock_release`), and the answer is `his_unavailable`.

An attempt that ends here is cancelled by the system with a reason (`his_refused`,
`his_unavailable`), its seat freed; no SMS goes out (the patient was never told it was held)
and it is never a strike. The HIS is above booking in the layers, so booking owns the port
and `providers.py` wires `guahao.his.realtime` into it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import errors, lifecycle, notices
from guahao.booking.context import load_slot_context
from guahao.booking.lifecycle import Actor
from guahao.booking.models import LIVE_STATES, Booking
from guahao.core.db import Database
from guahao.core.errors import GuahaoError
from guahao.outbox import service as outbox
from guahao.scheduling import seats

LOCKED, REFUSED, UNAVAILABLE, UNKNOWN = "locked", "refused", "unavailable", "unknown"


@dataclass(frozen=True)
class LockAnswer:
    outcome: str  # locked | refused | unavailable | unknown
    code: str | None = None  # the HIS's refusal code, or why it could not answer (for the log)
    his_calls: int = 1  # calls it took (lock and any order queries), for the benchmark


class HisHolds(Protocol):
    """The hospital's HIS as a realtime hold needs it."""

    async def lock(self, db: Database, *, hospital_id: int, booking_id: int, band_id: str,
                   minutes: float) -> LockAnswer:
        """Lock one number of `band_id` for our booking; resolve an unknown outcome by asking
        the HIS about the order (a bounded number of times). No transaction may be open."""


def lock_minutes(hold_until: dt.datetime, now: dt.datetime) -> float:
    """The HIS lock outlives our hold by a little (a payment just inside our deadline should
    still find it locked); the HIS takes at most 60 minutes."""
    return min(60.0, max(1.0, (hold_until - now).total_seconds() / 60 + 2))


async def do_record_lock_answer(session: AsyncSession, booking_id: int, answer: LockAnswer, *,
                                now: dt.datetime) -> tuple[Booking | None, GuahaoError | None]:
    """Step (c): record what the HIS said about the attempt. Returns (the booking, None) when
    it is held (locked at the HIS), else (the ended booking, the refusal the patient gets):
    the refusal is returned, not raised, because the ending must commit with it.

    Locks as a cancellation: schedule shared, the seat, then the booking's guarded UPDATE
    (lifecycle.apply names the state we saw). The attempt cannot have been paid or cancelled
    by the patient (nobody knew its id before this answer), but a 停诊 may have revoked it
    while the HIS answered: then a lock we got is released and the 停诊 is the answer."""
    found = await session.get(Booking, booking_id)
    if found is None:
        return None, errors.HisUnavailable()
    await load_slot_context(session, found.slot_id, lock_schedule=True)  # the schedule, shared: first lock
    await seats.lock_seats_of(session, [booking_id])
    booking = await session.get_one(Booking, booking_id, populate_existing=True)
    if booking.his_state != "pending" or booking.state != "held":
        if booking.state in LIVE_STATES and booking.his_state != "pending":
            # answered already (a request that finished an orphaned attempt met the original):
            # the recorded outcome stands, whatever this answer says
            return booking, None
        if answer.outcome in (LOCKED, UNKNOWN) and booking.state not in LIVE_STATES:
            await _release_lock(session, booking, now)
        return booking, errors.ScheduleSuspended() if booking.state == "revoked" else errors.HisUnavailable()
    if answer.outcome == LOCKED:
        if booking.hold_expires_at is not None and booking.hold_expires_at <= now:
            # the HIS took longer than our whole hold: too late to hand out, give it back
            await _end(session, booking, "his_unavailable", now, his_state="locked", release=True)
            return booking, errors.HisUnavailable()
        booking.his_state = "locked"
        if booking.amount_due == 0:
            # a free registration is confirmed at once, as in local mode; the HIS confirm goes
            # through the outbox (his.booking_confirmed) like any confirmation
            await session.flush()
            return await _confirm_free(session, booking, now), None
        await session.flush()
        return booking, None
    if answer.outcome == REFUSED:
        await _end(session, booking, "his_refused", now, his_state="refused", release=False)
        return booking, errors.SlotSoldOut()
    # unavailable: nothing happened at the HIS; unknown: maybe locked there, so it stays
    # 'pending' until the release job has cancelled it there (then 'cancelled')
    unknown = answer.outcome != UNAVAILABLE
    await _end(session, booking, "his_unavailable", now, his_state="pending" if unknown else "refused",
               release=unknown)
    return booking, errors.HisUnavailable()


async def _end(session: AsyncSession, booking: Booking, reason: str, now: dt.datetime, *, his_state: str,
               release: bool) -> None:
    await lifecycle.apply(session, booking, "cancel", actor=Actor.system(), now=now, reason=reason,
                          his_state=his_state)
    await seats.release(session, [booking.id])
    if release:
        await _release_lock(session, booking, now)


async def _release_lock(session: AsyncSession, booking: Booking, now: dt.datetime) -> None:
    await outbox.enqueue(session, topic=notices.LOCK_RELEASE, dedupe_key=f"{notices.LOCK_RELEASE}:{booking.id}",
                         payload={"booking_id": booking.id, "hospital_id": booking.hospital_id},
                         now=now, hospital_id=booking.hospital_id)


async def _confirm_free(session: AsyncSession, booking: Booking, now: dt.datetime) -> Booking:
    from guahao.booking.actions import do_confirm  # actions imports the modules this one does

    return await do_confirm(session, booking.id, now=now)


# --- for the HIS side's release job (his/realtime_jobs.py) -------------------------------------

ENDED_STATES = ("expired", "cancelled", "revoked")


@dataclass(frozen=True)
class ReleaseFacts:
    booking_id: int
    hospital_id: int
    state: str
    his_state: str | None
    created_at: dt.datetime


async def release_facts(session: AsyncSession, booking_id: int) -> ReleaseFacts | None:
    b = await session.get(Booking, booking_id)
    if b is None:
        return None
    return ReleaseFacts(b.id, b.hospital_id, b.state, b.his_state, b.created_at)


async def do_mark_lock_released(session: AsyncSession, booking_id: int, *, now: dt.datetime) -> bool:
    """The HIS no longer holds a number for this ended booking. A conditional UPDATE: never
    touches a booking that is live (a lock that became a confirmed visit is not ours to drop)."""
    result = await session.execute(
        update(Booking).where(Booking.id == booking_id, Booking.state.in_(ENDED_STATES),
                              Booking.his_state.in_(notices.LOCK_HELD_AT_HIS))
        .values(his_state="cancelled", updated_at=now).execution_options(synchronize_session=False))
    return result.rowcount == 1
