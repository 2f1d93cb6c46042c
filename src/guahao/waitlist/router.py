"""Waitlist (候补) routes: patients join, look and leave; staff see each schedule's queue."""
from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Path, Request

from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentAccount, CurrentStaff, Db
from guahao.core.localtime import localize
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import actions, queries
from guahao.waitlist import rules as waitlist_rules
from guahao.waitlist.schemas import (
    QueueRow,
    WaitlistEntryCreate,
    WaitlistEntryRead,
    WaitlistPage,
    WaitlistRulesRead,
    WaitlistRulesUpdate,
)

router = APIRouter(prefix="/api/v1/waitlist", tags=["waitlist"])
staff_router = APIRouter(prefix="/api/v1/staff", tags=["staff waitlist"])
# joining is rare and deliberate: a burst is a bot (answered 429 before any database work)
JOIN_LIMIT = "10/minute;60/hour"
HOSPITAL_ROLES = ("hospital_admin", "scheduler", "front_desk")
EntryId = Annotated[int, Path(ge=1, le=2**63 - 1)]
ScheduleId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def limit_joins(request: Request, account_id: int) -> None:
    await request.app.state.limiter.hit(JOIN_LIMIT, "waitlist-join", str(account_id))


@router.post("", status_code=201, response_model=WaitlistEntryRead,
             responses={409: {"description": "refused (problem+json with a stable code)"}})
async def join_waitlist(request: Request, body: WaitlistEntryCreate, account: CurrentAccount, db: Db,
                        clock: ClockDep) -> WaitlistEntryRead:
    """加入候补: queue one of your verified patients for a sold-out schedule. One live entry per
    real person and schedule (across accounts), at most K per person at the hospital (rule,
    default 3). When a seat frees, the head of the queue gets a hold with a pay window and an SMS."""
    await limit_joins(request, account.account_id)
    now = clock.now()
    async with db.begin() as session:
        entry = await actions.do_join(session, account_id=account.account_id, patient_id=body.patient_id,
                                      schedule_id=body.schedule_id, now=now)
        read = await queries.entry_read(session, entry, now)
        zone = await catalog_service.zone_of(session, entry.hospital_id)
    return localize(read, zone)


@router.get("", response_model=WaitlistPage)
async def my_waitlist(account: CurrentAccount, db: Db, clock: ClockDep) -> WaitlistPage:
    """Your waitlist entries, newest first, with the position (前面还有 N 人) of each waiting one."""
    async with db.read() as session:
        items = await queries.list_for_account(session, account.account_id, clock.now())
        zones = {i.hospital_id: await catalog_service.zone_of(session, i.hospital_id) for i in items}
    return WaitlistPage(items=[localize(i, zones[i.hospital_id]) for i in items], total=len(items))


@router.get("/{entry_id}", response_model=WaitlistEntryRead)
async def get_entry(entry_id: EntryId, account: CurrentAccount, db: Db, clock: ClockDep) -> WaitlistEntryRead:
    """One of your waitlist entries: its state, position (前面还有 N 人) and running offer."""
    async with db.read() as session:
        read = await queries.get_read_for_account(session, account.account_id, entry_id, clock.now())
        return localize(read, await catalog_service.zone_of(session, read.hospital_id))


@router.post("/{entry_id}/leave", response_model=WaitlistEntryRead)
async def leave_waitlist(entry_id: EntryId, account: CurrentAccount, db: Db, clock: ClockDep) -> WaitlistEntryRead:
    """退出候补 (free): a running offer is given up too, and goes to the next in line."""
    now = clock.now()
    async with db.begin() as session:
        entry = await actions.do_leave(session, account_id=account.account_id, entry_id=entry_id, now=now)
        read = await queries.entry_read(session, entry, now)
        zone = await catalog_service.zone_of(session, entry.hospital_id)
    return localize(read, zone)


@staff_router.get("/schedules/{schedule_id}/waitlist", response_model=list[QueueRow])
async def schedule_queue(schedule_id: ScheduleId, staff: CurrentStaff, db: Db) -> list[QueueRow]:
    """A schedule's 候补 queue in order, patients masked (any staff role of the hospital)."""
    staff.require(*HOSPITAL_ROLES)
    async with db.read() as session:
        schedule = await scheduling_service.get_schedule_or_raise(
            session, schedule_id, hospital_id=None if staff.is_operator else staff.hospital_id)
        rows = await queries.queue_for_staff(session, schedule.id)
        return localize(rows, await catalog_service.zone_of(session, schedule.hospital_id))


@staff_router.get("/hospitals/{hospital_id}/waitlist-rules", response_model=WaitlistRulesRead)
async def get_waitlist_rules(hospital_id: int, staff: CurrentStaff, db: Db) -> WaitlistRulesRead:
    """The hospital's 候补 rules (defaults until an admin sets them)."""
    staff.require(*HOSPITAL_ROLES)
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        return WaitlistRulesRead(**dataclasses.asdict(await waitlist_rules.get_rules(session, hospital_id)))


@staff_router.put("/hospitals/{hospital_id}/waitlist-rules", response_model=WaitlistRulesRead)
async def set_waitlist_rules(hospital_id: int, body: WaitlistRulesUpdate, staff: CurrentStaff, db: Db,
                             clock: ClockDep) -> WaitlistRulesRead:
    """Change the hospital's 候补 rules (hospital admin), audited. Entries keep the cutoff they joined under."""
    staff.require("hospital_admin")
    staff.ensure_hospital(hospital_id)
    values = body.model_dump(exclude_none=True)
    now = clock.now()
    async with db.begin() as session:
        rules = await waitlist_rules.do_update_rules(session, hospital_id, values, now=now, staff_id=staff.staff_id)
    return WaitlistRulesRead(**dataclasses.asdict(rules))
