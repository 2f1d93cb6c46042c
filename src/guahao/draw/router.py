"""The draw's public and patient routes (摇号放号)."""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from guahao.catalog import service as catalog_service
from guahao.core.deps import ClockDep, CurrentAccount, Db
from guahao.core.localtime import localize
from guahao.draw import entries, queries
from guahao.draw.schemas import DrawEntryCreate, DrawEntryRead, DrawEntryReceipt, DrawRead

router = APIRouter(prefix="/api/v1", tags=["draws"])


async def arrival(clock: ClockDep) -> dt.datetime:
    """When the request reached the application: the route's first dependency, resolved before
    the session look-up, so waiting for the database does not make an entry late."""
    return clock.now()


Arrival = Annotated[dt.datetime, Depends(arrival)]


@router.get("/schedules/{schedule_id}/draw", response_model=DrawRead)
async def read_draw(schedule_id: int, db: Db) -> DrawRead:
    """A schedule's draw: its timeline and commitment (public before it opens); after the
    draw, the revealed secret, the root and the seed."""
    async with db.read() as session:
        view = await queries.view(session, schedule_id)
        return localize(DrawRead(**dataclasses.asdict(view)), await catalog_service.zone_of(session, view.hospital_id))


async def _limit(request: Request, account_id: int) -> None:
    await request.app.state.limiter.hit(request.app.state.settings.hold_limit_per_account, "draw-entry",
                                        str(account_id))


@router.post("/schedules/{schedule_id}/draw/entries", status_code=202, response_model=DrawEntryReceipt,
             responses={409: {"description": "not open, closed or refused (problem+json with a stable code)"}})
async def enter_draw(request: Request, arrived_at: Arrival, schedule_id: int, body: DrawEntryCreate,
                     account: CurrentAccount, db: Db, clock: ClockDep):
    """Enter one of your verified patients in the draw. One entry per real person however
    many devices or accounts try: a repeat answers the same receipt. Whether it counts is
    decided by when the request arrived, not when it finished."""
    await _limit(request, account.account_id)
    async with db.begin() as session:
        done = await entries.do_enter(session, account_id=account.account_id, patient_id=body.patient_id,
                                      schedule_id=schedule_id, waitlist_opt_in=body.waitlist_opt_in,
                                      arrived_at=arrived_at, now=clock.now())
        zone = await catalog_service.zone_of(session, None)
    answer = localize(DrawEntryReceipt(draw_id=done.draw_id, receipt=done.receipt, arrived_at=done.arrived_at,
                                       waitlist_opt_in=done.waitlist_opt_in, closes_at=done.closes_at,
                                       result_at=done.result_at, already_entered=not done.new), zone)
    return JSONResponse(answer.model_dump(mode="json"), status_code=202)


@router.get("/schedules/{schedule_id}/draw/entries/mine", response_model=list[DrawEntryRead])
async def my_entries(schedule_id: int, patient_id: int, account: CurrentAccount, db: Db) -> list[DrawEntryRead]:
    """Your patient's entry in this draw (made from any account: the entry is the person's),
    with rank and outcome once it is held; an empty list when they have not entered."""
    async with db.read() as session:
        found = await queries.entries_of_account(session, schedule_id, account.account_id, patient_id=patient_id)
        zone = await catalog_service.zone_of(session, None)
    return [localize(DrawEntryRead(**dataclasses.asdict(e)), zone) for e in found]


@router.get("/schedules/{schedule_id}/draw/audit")
async def draw_audit(schedule_id: int, db: Db) -> dict:
    """The audit record (public, once the draw is held): commitment, revealed secret, root,
    seed, every receipt with its rank and outcome. tools/verify_draw.py recomputes the result
    from it without trusting us."""
    async with db.read() as session:
        view = await queries.view(session, schedule_id)
        zone = await catalog_service.zone_of(session, view.hospital_id)
        record = await queries.audit_record(session, view.draw_id, zone)
    return localize(record, zone)

