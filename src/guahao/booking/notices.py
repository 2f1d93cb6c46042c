"""Outbox rows a booking transition causes (consumed by notifications, payments and HIS)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.models import Booking
from guahao.outbox import service as outbox
from guahao.scheduling import seats

LOCK_RELEASE = "his.lock_release"
# his_state of a realtime hold that has (or may have) a lock at the HIS
LOCK_HELD_AT_HIS = ("pending", "locked")


async def after_transition(session: AsyncSession, booking: Booking, *, now: dt.datetime, his_mode: str,
                           was_paid: bool = False) -> None:
    """Write the messages for the state `booking` just entered. Dedupe keys make each effect
    happen once per booking, whatever retries the workers go through."""
    state, bid, hid = booking.state, booking.id, booking.hospital_id
    base = {"booking_id": bid, "hospital_id": hid, "state": state}

    async def put(topic: str, **extra) -> None:
        await outbox.enqueue(session, topic=topic, dedupe_key=f"{topic}:{bid}", payload={**base, **extra},
                             now=now, hospital_id=hid)

    if state == "confirmed":
        await put("notify.booking_confirmed")
        if his_mode != "local":
            await put("his.booking_confirmed")
    elif state in ("cancelled", "revoked"):
        await put(f"notify.booking_{state}", reason=booking.state_reason)
        if was_paid and booking.amount_due > 0:
            await put("payment.refund", amount=booking.amount_due)
        if was_paid and his_mode != "local":
            await put("his.booking_cancelled")
    elif state == "expired":
        await put("notify.booking_expired")
    elif state == "no_show" and his_mode != "local":
        await put("his.booking_no_show")
    if state in ("expired", "cancelled", "revoked") and not was_paid and booking.his_state in LOCK_HELD_AT_HIS:
        # a realtime hold that ends unpaid: the number it locked at the HIS goes back to the
        # pool (his/realtime_jobs.py; an idempotent cancel, so a lock that never happened or
        # already lapsed there is fine). Decided by the booking's own his_state, not by the
        # hospital's mode now: a booking lives in the mode it was taken in.
        await put(LOCK_RELEASE)



async def seat_freed(session: AsyncSession, booking: Booking, *, now: dt.datetime) -> None:
    """A patient's cancellation freed a seat of a schedule with a 候补 queue (see
    scheduling.seats.announce_freed)."""
    await seats.announce_freed(session, schedule_id=booking.schedule_id, hospital_id=booking.hospital_id,
                               key=f"booking:{booking.id}", now=now)
