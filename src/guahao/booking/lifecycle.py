"""The booking state machine (DESIGN.md section 3): one table, one function that applies it."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from guahao.booking.errors import TransitionRefused
from guahao.booking.models import Booking, BookingEvent

# (from, event) -> to
TRANSITIONS: dict[tuple[str | None, str], str] = {
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
EVENTS = sorted({event for _, event in TRANSITIONS})
STATES = sorted({s for s, _ in TRANSITIONS if s} | set(TRANSITIONS.values()))

# FHIR Appointment.status for interop
FHIR_STATUS = {
    "held": "pending", "confirmed": "booked", "checked_in": "checked-in", "completed": "fulfilled",
    "cancelled": "cancelled", "expired": "cancelled", "revoked": "cancelled", "no_show": "noshow",
}


def next_state(current: str | None, event: str) -> str:
    try:
        return TRANSITIONS[(current, event)]
    except KeyError:
        raise TransitionRefused(state=current or "new", event=event) from None


@dataclass(frozen=True)
class Actor:
    type: str  # account | staff | system
    id: int | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls("system")


async def apply(session: AsyncSession, booking: Booking, event: str, *, actor: Actor, now: dt.datetime,
                reason: str | None = None, **changes) -> None:
    """Move `booking` along `event`, guarded by its current state in the database.

    The UPDATE names the state the caller saw: if a concurrent transaction moved the booking
    first, no row matches and the transition is refused instead of silently overwritten.
    """
    to_state = next_state(booking.state, event)
    values = {"state": to_state, "updated_at": now, **changes}
    if reason is not None:
        values["state_reason"] = reason
    result = await session.execute(
        update(Booking).where(Booking.id == booking.id, Booking.state == booking.state).values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise TransitionRefused(state=booking.state, event=event)
    session.add(BookingEvent(booking_id=booking.id, hospital_id=booking.hospital_id, from_state=booking.state,
                             to_state=to_state, actor_type=actor.type, actor_id=actor.id, reason=reason, at=now))
    for key, value in values.items():
        set_committed_value(booking, key, value)


def record_creation(session: AsyncSession, booking: Booking, *, actor: Actor, now: dt.datetime) -> None:
    """The event row of a booking's first state (held, or confirmed when free)."""
    event = "hold" if booking.state == "held" else "hold_free"
    if next_state(None, event) != booking.state:
        raise TransitionRefused(state="new", event=event)
    session.add(BookingEvent(booking_id=booking.id, hospital_id=booking.hospital_id, from_state=None,
                             to_state=booking.state, actor_type=actor.type, actor_id=actor.id, at=now))
