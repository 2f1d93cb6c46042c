"""Entering a draw: one append-only row per real person, answered at once with a receipt.

Concurrency story. An entry reads the draw row under a share lock (PostgreSQL `FOR SHARE`;
SQLite writers are serial) and checks it is still `open`; ranking takes the row exclusively.
So an entry either commits before the ranking (and is ranked) or sees the draw ranked and is
refused: none is lost in between. Whether it counts is decided by when the request *arrived*
(`arrived_at`, stamped by the route before any waiting), so an entry that arrived before the
close but finished after it counts; the draw runs a grace period (`service.GRACE`) after the
close for those to commit. The unique key (draw, person) makes twins from many devices or
accounts one entry: insert-or-nothing, then read back the row that is there.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import service as catalog_service
from guahao.core.errors import NotFound
from guahao.draw import errors, fairness
from guahao.draw.models import Draw, DrawEntry
from guahao.patients import service as patients_service


@dataclass(frozen=True)
class Entered:
    draw_id: int
    entry_id: int
    receipt: str
    arrived_at: dt.datetime
    waitlist_opt_in: bool
    closes_at: dt.datetime
    result_at: dt.datetime
    new: bool  # False: this person had entered already (another device or account)


async def live_draw(session: AsyncSession, schedule_id: int, *, lock: bool = False) -> Draw:
    stmt = select(Draw).where(Draw.schedule_id == schedule_id, Draw.status != "cancelled")
    if lock:
        stmt = stmt.with_for_update(read=True).execution_options(populate_existing=True)
    draw = await session.scalar(stmt)
    if draw is None:
        raise errors.NoDraw()
    return draw


def _local(instant: dt.datetime, zone) -> str:
    return instant.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


async def do_enter(session: AsyncSession, *, account_id: int, patient_id: int, schedule_id: int,
                   waitlist_opt_in: bool, arrived_at: dt.datetime, now: dt.datetime) -> Entered:
    patient = await patients_service.get_for_account(session, account_id, patient_id)
    if patient is None:
        raise NotFound("patient")  # before anything about the draw: another account's patient learns nothing
    draw = await live_draw(session, schedule_id, lock=True)
    if arrived_at < draw.opens_at:
        zone = await catalog_service.zone_of(session, draw.hospital_id)
        raise errors.DrawNotOpen(opens_at_local=_local(draw.opens_at, zone))
    if arrived_at >= draw.closes_at or draw.status != "open":
        zone = await catalog_service.zone_of(session, draw.hospital_id)
        raise errors.DrawClosed(closes_at_local=_local(draw.closes_at, zone))
    if patient.verification != "verified":
        raise errors.DrawPatientNotVerified()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    inserted = (await session.execute(
        insert(DrawEntry.__table__)
        .values(draw_id=draw.id, hospital_id=draw.hospital_id, person_id=patient.person_id, account_id=account_id,
                patient_id=patient.id, receipt=fairness.new_receipt(), waitlist_opt_in=waitlist_opt_in,
                arrived_at=arrived_at, created_at=now)
        .on_conflict_do_nothing(index_elements=["draw_id", "person_id"])
        .returning(DrawEntry.__table__.c.id))).scalar()
    entry = await session.scalar(select(DrawEntry).where(DrawEntry.draw_id == draw.id,
                                                         DrawEntry.person_id == patient.person_id))
    assert entry is not None
    return Entered(draw_id=draw.id, entry_id=entry.id, receipt=entry.receipt, arrived_at=entry.arrived_at,
                   waitlist_opt_in=entry.waitlist_opt_in, closes_at=draw.closes_at, result_at=draw.result_at,
                   new=inserted is not None)
