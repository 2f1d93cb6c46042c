"""Reads of the draw for the API, the pages and the notifications (no locks, no writes).

The secret, the root and the seed leave this module only once the draw is ranked: before
that the commitment is all anyone sees (commit-reveal).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.draw import errors
from guahao.draw.models import Draw, DrawEntry
from guahao.patients import service as patients_service
from guahao.scheduling import service as scheduling_service

REVEALED = ("ranked", "allocated")
ALGORITHM = ("commitment = SHA-256(secret); root = SHA-256(sorted receipts joined by LF); "
             "seed = HMAC-SHA256(secret, root + ':' + draw_id); entries ranked by HMAC-SHA256(seed, receipt) "
             "ascending (hex), ties by receipt; keys are the hex-decoded bytes; seats allocated in rank order, "
             "an ineligible winner skipped with its reason")


@dataclass(frozen=True)
class DrawView:
    draw_id: int
    schedule_id: int
    hospital_id: int
    status: str
    opens_at: dt.datetime
    release_at: dt.datetime
    closes_at: dt.datetime
    result_at: dt.datetime
    commitment: str
    entries: int
    seats: int | None
    secret: str | None
    root: str | None
    seed: str | None


async def _draw_of_schedule(session: AsyncSession, schedule_id: int) -> Draw:
    draw = await session.scalar(select(Draw).where(Draw.schedule_id == schedule_id, Draw.status != "cancelled"))
    if draw is None:
        raise errors.NoDraw()
    return draw


async def view(session: AsyncSession, schedule_id: int) -> DrawView:
    draw = await _draw_of_schedule(session, schedule_id)
    return await _view(session, draw)


async def _view(session: AsyncSession, draw: Draw) -> DrawView:
    count = await session.scalar(select(func.count()).select_from(DrawEntry).where(DrawEntry.draw_id == draw.id))
    revealed = draw.status in REVEALED
    return DrawView(draw_id=draw.id, schedule_id=draw.schedule_id, hospital_id=draw.hospital_id, status=draw.status,
                    opens_at=draw.opens_at, release_at=draw.release_at, closes_at=draw.closes_at,
                    result_at=draw.result_at, commitment=draw.commitment, entries=int(count or 0),
                    seats=draw.seats if revealed else None, secret=draw.secret if revealed else None,
                    root=draw.root if revealed else None, seed=draw.seed if revealed else None)


async def mode_of(session: AsyncSession, schedule_id: int) -> str | None:
    """'draw' when the schedule has a live draw (the pages link to it), else None."""
    found = await session.scalar(select(Draw.id).where(Draw.schedule_id == schedule_id, Draw.status != "cancelled"))
    return "draw" if found is not None else None


@dataclass(frozen=True)
class EntryView:
    entry_id: int
    patient_id: int
    receipt: str
    arrived_at: dt.datetime
    waitlist_opt_in: bool
    rank: int | None
    outcome: str | None
    reason: str | None
    booking_id: int | None
    visit_no: int | None


async def entries_of_account(session: AsyncSession, schedule_id: int, account_id: int, *,
                             patient_id: int | None = None) -> list[EntryView]:
    """The entries of the account's patients (or of one of them: NotFound when it is not the
    account's) in the schedule's draw, made from any account: the entry is the person's. Rank
    and outcome only once the draw has revealed them."""
    if patient_id is not None:
        patients = [await patients_service.get_or_raise(session, account_id, patient_id)]
    draw = await _draw_of_schedule(session, schedule_id)
    if patient_id is None:
        patients = await patients_service.list_for_account(session, account_id)
    by_person = {p.person_id: p.id for p in patients}
    if not by_person:
        return []
    rows = await session.scalars(select(DrawEntry).where(DrawEntry.draw_id == draw.id,
                                                         DrawEntry.person_id.in_(by_person)).order_by(DrawEntry.id))
    revealed = draw.status in REVEALED
    return [EntryView(entry_id=e.id, patient_id=by_person[e.person_id], receipt=e.receipt, arrived_at=e.arrived_at,
                      waitlist_opt_in=e.waitlist_opt_in, rank=e.rank if revealed else None, outcome=e.outcome,
                      reason=e.reason, booking_id=e.booking_id if e.account_id == account_id else None,
                      visit_no=e.visit_no) for e in rows]


async def audit_record(session: AsyncSession, draw_id: int, zone) -> dict:
    """Everything needed to recompute the draw (tools/verify_draw.py), after it is held."""
    draw = await session.get(Draw, draw_id)
    if draw is None or draw.status == "cancelled":
        raise errors.NoDraw()
    if draw.status not in REVEALED:
        raise errors.AuditNotYet(result_at_local=draw.result_at.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S"))
    rows = (await session.execute(
        select(DrawEntry.receipt, DrawEntry.rank, DrawEntry.outcome, DrawEntry.reason, DrawEntry.visit_no)
        .where(DrawEntry.draw_id == draw.id).order_by(DrawEntry.rank))).all()
    return {
        "draw_id": draw.id, "schedule_id": draw.schedule_id, "status": draw.status, "algorithm": ALGORITHM,
        "opens_at": draw.opens_at, "closes_at": draw.closes_at, "result_at": draw.result_at,
        "commitment": draw.commitment, "secret": draw.secret, "root": draw.root, "seed": draw.seed,
        "seats": draw.seats,
        "entries": [{"receipt": r.receipt, "rank": r.rank, "outcome": r.outcome, "reason": r.reason,
                     "visit_no": r.visit_no} for r in rows],
    }


@dataclass(frozen=True)
class ResultFacts:
    """What a result message needs: whom to tell, about what."""

    entry_id: int
    account_id: int
    patient_id: int
    hospital_id: int
    slot_id: int  # the schedule's first online slot (a winner's message uses the booking's)
    outcome: str | None
    reason: str | None
    rank: int | None
    booking_id: int | None


async def result_facts(session: AsyncSession, entry_id: int) -> ResultFacts | None:
    entry = await session.get(DrawEntry, entry_id)
    if entry is None:
        return None
    draw = await session.get(Draw, entry.draw_id)
    slots = await scheduling_service.list_slots(session, draw.schedule_id, pool="platform")
    slot_id = min(slots, key=lambda s: (s.starts_at, s.id)).id if slots else 0
    return ResultFacts(entry_id=entry.id, account_id=entry.account_id, patient_id=entry.patient_id,
                       hospital_id=entry.hospital_id, slot_id=slot_id, outcome=entry.outcome, reason=entry.reason,
                       rank=entry.rank, booking_id=entry.booking_id)
