"""Where bookings stand at the hospital's HIS: the columns the HIS feature records after it
has talked to the HIS (write-back answers, flags for the hospital), and the reads its sync
and drift jobs need. The HIS feature sits above booking, so it changes booking rows only
through these functions; each runs inside the caller's short transaction, never across a
network call.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.models import HIS_STATES, Booking

# what a booking in each of our states should be at the HIS once its write-back is done
# (a hold of a synced hospital is nothing there yet; realtime holds are the realtime path's)
EXPECTED_AT_HIS = {"confirmed": "confirmed", "checked_in": "confirmed", "completed": "confirmed",
                   "no_show": "no_show"}


@dataclass(frozen=True)
class HisView:
    id: int
    hospital_id: int
    schedule_id: int
    slot_id: int
    visit_date: dt.date
    state: str
    visit_no: int | None
    his_state: str | None
    his_visit_no: int | None
    his_patient_id: str | None
    his_flag: str | None

    @classmethod
    def of(cls, row: Booking) -> HisView:
        return cls(id=row.id, hospital_id=row.hospital_id, schedule_id=row.schedule_id, slot_id=row.slot_id,
                   visit_date=row.visit_date, state=row.state, visit_no=row.visit_no, his_state=row.his_state,
                   his_visit_no=row.his_visit_no, his_patient_id=row.his_patient_id, his_flag=row.his_flag)


async def his_view(session: AsyncSession, booking_id: int) -> HisView | None:
    row = await session.get(Booking, booking_id, populate_existing=True)
    return None if row is None else HisView.of(row)


async def do_record_his(session: AsyncSession, booking_id: int, *, his_state: str, now: dt.datetime,
                        visit_no: int | None = None, flag: str | None = None) -> bool:
    """Record what the HIS answered about a booking (its state there, its visit number, a flag
    for the hospital). Repeating it with the same answer changes nothing that matters, so a
    write-back retried after a crash records the same thing. False when there is no booking."""
    if his_state not in HIS_STATES:
        raise ValueError(f"not a HIS state: {his_state}")
    values: dict = {"his_state": his_state, "updated_at": now}
    if visit_no is not None:
        values["his_visit_no"] = visit_no
    if flag is not None:
        values["his_flag"] = flag[:40]
    result = await session.execute(update(Booking).where(Booking.id == booking_id).values(**values)
                                   .execution_options(synchronize_session=False))
    return result.rowcount == 1


async def do_flag(session: AsyncSession, booking_ids: Iterable[int], *, flag: str, now: dt.datetime) -> list[int]:
    """Flag bookings for the hospital to resolve by hand (an open flag is kept: the first
    problem found stays visible until someone clears it). Returns the ids newly flagged."""
    ids = list(booking_ids)
    if not ids:
        return []
    rows = await session.execute(update(Booking).where(Booking.id.in_(ids), Booking.his_flag.is_(None))
                                 .values(his_flag=flag[:40], updated_at=now).returning(Booking.id)
                                 .execution_options(synchronize_session=False))
    return sorted(row[0] for row in rows)


async def flagged(session: AsyncSession, hospital_id: int) -> list[HisView]:
    """Bookings of a hospital with an open HIS flag, for the operator and the hospital."""
    rows = await session.scalars(select(Booking).where(Booking.hospital_id == hospital_id,
                                                       Booking.his_flag.is_not(None)).order_by(Booking.id))
    return [HisView.of(row) for row in rows]


async def of_visit_dates(session: AsyncSession, hospital_id: int, first: dt.date, last: dt.date) -> list[HisView]:
    """Every booking of a hospital with a visit date in [first, last] (any state), for
    comparing our books with the HIS's."""
    rows = await session.scalars(select(Booking).where(Booking.hospital_id == hospital_id,
                                                       Booking.visit_date.between(first, last)).order_by(Booking.id))
    return [HisView.of(row) for row in rows]
