"""Reads of the waitlist for the patient pages, the API, staff, notifications and the
invariant checks. No locks: positions shown are exact as of the read."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import queries as booking_queries
from guahao.core.crypto import mask_name
from guahao.core.errors import NotFound
from guahao.patients import service as patients_service
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import rules as waitlist_rules
from guahao.waitlist.models import LIVE_STATES, WaitlistEntry
from guahao.waitlist.schemas import QueueRow, WaitlistEntryRead, fhir_status


@dataclass(frozen=True)
class EntryFacts:
    id: int
    hospital_id: int
    schedule_id: int
    person_id: int
    patient_id: int
    account_id: int
    position: int
    state: str
    offer_booking_id: int | None
    offers: int
    reason: str | None
    cutoff_at: dt.datetime
    offered_at: dt.datetime | None

    @classmethod
    def of(cls, e: WaitlistEntry) -> EntryFacts:
        return cls(e.id, e.hospital_id, e.schedule_id, e.person_id, e.patient_id, e.account_id, e.position, e.state,
                   e.offer_booking_id, e.offers, e.reason, e.cutoff_at, e.offered_at)


async def get(session: AsyncSession, entry_id: int) -> EntryFacts | None:
    entry = await session.get(WaitlistEntry, entry_id, populate_existing=True)
    return None if entry is None else EntryFacts.of(entry)


async def ahead(session: AsyncSession, schedule_id: int, position: int) -> int:
    """前面还有 N 人: entries still waiting with a smaller position."""
    return await session.scalar(select(func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.schedule_id == schedule_id, WaitlistEntry.state == "waiting",
        WaitlistEntry.position < position)) or 0


async def waiting_count(session: AsyncSession, schedule_id: int) -> int:
    return await session.scalar(select(func.count()).select_from(WaitlistEntry).where(
        WaitlistEntry.schedule_id == schedule_id, WaitlistEntry.state == "waiting")) or 0


async def all_entries(session: AsyncSession, schedule_id: int | None = None) -> list[EntryFacts]:
    query = select(WaitlistEntry).order_by(WaitlistEntry.schedule_id, WaitlistEntry.position)
    if schedule_id is not None:
        query = query.where(WaitlistEntry.schedule_id == schedule_id)
    return [EntryFacts.of(e) for e in await session.scalars(query)]


async def entry_read(session: AsyncSession, entry: WaitlistEntry, now: dt.datetime) -> WaitlistEntryRead:
    schedule = await scheduling_service.get_schedule_or_raise(session, entry.schedule_id)
    slots = await scheduling_service.list_slots(session, entry.schedule_id, pool="platform")
    ctx = await booking_queries.slot_context(session, slots[0].id)
    patient = await patients_service.get_one(session, entry.patient_id)
    offer = await booking_queries.get(session, entry.offer_booking_id) if entry.offer_booking_id else None
    state = entry.state
    if state == "offered" and offer is not None and offer.state in ("confirmed", "checked_in", "completed"):
        state = "fulfilled"  # paid: the queue's own record catches up at its next run
    return WaitlistEntryRead(
        id=entry.id, schedule_id=entry.schedule_id, hospital_id=entry.hospital_id, hospital_name=ctx.hospital_name,
        department_name=ctx.department_name, doctor_name=ctx.doctor_name, visit_date=schedule.date,
        period=schedule.period, starts_at=schedule.starts_at, patient_id=entry.patient_id,
        patient_name=mask_name(patient.name), state=state, position=entry.position,
        fhir_status=fhir_status(state=state, offer_booking_id=entry.offer_booking_id, cutoff_at=entry.cutoff_at,
                                now=now),
        ahead=await ahead(session, entry.schedule_id, entry.position) if state == "waiting" else None,
        offer_booking_id=entry.offer_booking_id,
        offer_expires_at=offer.hold_expires_at if offer is not None and state == "offered" else None,
        reason=entry.reason, cutoff_at=entry.cutoff_at, suspended=schedule.status == "suspended",
        joined_at=entry.joined_at)


async def list_for_account(session: AsyncSession, account_id: int, now: dt.datetime, *,
                           live_only: bool = False) -> list[WaitlistEntryRead]:
    query = select(WaitlistEntry).where(WaitlistEntry.account_id == account_id)
    if live_only:
        query = query.where(WaitlistEntry.state.in_(LIVE_STATES))
    rows = list(await session.scalars(query.order_by(WaitlistEntry.joined_at.desc(), WaitlistEntry.id.desc())
                                      .limit(100)))
    return [await entry_read(session, e, now) for e in rows]


async def get_read_for_account(session: AsyncSession, account_id: int, entry_id: int,
                               now: dt.datetime) -> WaitlistEntryRead:
    entry = await session.get(WaitlistEntry, entry_id)
    if entry is None or entry.account_id != account_id:
        raise NotFound("waitlist_entry")
    return await entry_read(session, entry, now)


async def live_entry_for(session: AsyncSession, account_id: int, schedule_id: int) -> WaitlistEntry | None:
    """The account's live entry on a schedule, if any (the confirm page shows it)."""
    return await session.scalar(select(WaitlistEntry).where(
        WaitlistEntry.account_id == account_id, WaitlistEntry.schedule_id == schedule_id,
        WaitlistEntry.state.in_(LIVE_STATES)).order_by(WaitlistEntry.id).limit(1))


async def queue_for_staff(session: AsyncSession, schedule_id: int) -> list[QueueRow]:
    rows = list(await session.scalars(select(WaitlistEntry).where(WaitlistEntry.schedule_id == schedule_id)
                                      .order_by(WaitlistEntry.position)))
    names = await patients_service.names_by_id(session, {e.patient_id for e in rows})
    return [QueueRow(id=e.id, position=e.position, state=e.state, patient_name=mask_name(names.get(e.patient_id, "")),
                     offer_booking_id=e.offer_booking_id, offers=e.offers, reason=e.reason, joined_at=e.joined_at,
                     updated_at=e.updated_at) for e in rows]


async def rules_for(session: AsyncSession, hospital_id: int) -> waitlist_rules.Rules:
    return await waitlist_rules.get_rules(session, hospital_id)
