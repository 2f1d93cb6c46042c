"""Read-only questions other features ask about bookings."""
from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.models import IN_PROGRESS_STATES, Booking


async def schedule_has_bookings(session: AsyncSession, schedule_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(Booking.schedule_id == schedule_id))))


async def patient_has_live_bookings(session: AsyncSession, patient_id: int) -> bool:
    return bool(await session.scalar(select(exists().where(
        Booking.patient_id == patient_id, Booking.state.in_(IN_PROGRESS_STATES)))))
