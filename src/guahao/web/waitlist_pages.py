"""候补 (waitlist) pages: join a sold-out schedule (from the confirm page), my waitlist with
the position (前面还有 N 人), leave. Each action is the JSON API's own route function
(waitlist/router.py), so a page and the API refuse and answer alike."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from guahao.booking import queries as booking_queries
from guahao.core.errors import GuahaoError, NotFound
from guahao.patients import router as patients_api
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import queries as waitlist_queries
from guahao.waitlist import router as waitlist_api
from guahao.waitlist.schemas import WaitlistEntryCreate
from guahao.web.pages import Page, PageDep, form_of, redirect, render

router = APIRouter(include_in_schema=False)
ScheduleId = Annotated[int, Path(ge=1, le=2**63 - 1)]
EntryId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _state(page: Page):
    state = page.request.app.state
    return state.db, state.clock


async def _join_page(page: Page, schedule_id: int, *, error: str | None = None, status: int = 200,
                     chosen: int | None = None):
    account = page.need_account()
    db, clock = _state(page)
    now = clock.now()
    async with db.read() as session:
        slots = await scheduling_service.list_slots(session, schedule_id, pool="platform")
        if not slots:
            raise NotFound("schedule")
        ctx = await booking_queries.slot_context(session, slots[0].id)
        if ctx is None or ctx.schedule_status == "draft":
            raise NotFound("schedule")
        rules = await waitlist_queries.rules_for(session, ctx.hospital_id)
        waiting = await waitlist_queries.waiting_count(session, schedule_id)
        mine = await waitlist_queries.live_entry_for(session, account.account_id, schedule_id)
    patients = await patients_api.list_patients(page.request, account, db, clock)
    zone = ctx.zone
    cutoff = min(rules.cutoff(ctx.visit_date, zone), ctx.closes_at).astimezone(zone)
    return render(page, "waitlist/join.html", status=status, ctx=ctx, schedule_id=schedule_id, rules=rules,
                  starts_at=ctx.starts_at.astimezone(zone), ends_at=ctx.ends_at.astimezone(zone), cutoff=cutoff,
                  waiting=waiting, mine=mine, patients=patients.items, error=error, chosen=chosen, now=now)


@router.get("/waitlist/join/{schedule_id}")
async def join_page(page: PageDep, schedule_id: ScheduleId):
    return await _join_page(page, schedule_id)


@router.post("/waitlist/join/{schedule_id}")
async def join(page: PageDep, schedule_id: ScheduleId):
    account = page.need_account()
    form = await form_of(page)
    db, clock = _state(page)
    try:
        patient_id = int(form.get("patient_id", "0"))
    except ValueError:
        patient_id = 0
    if patient_id <= 0:
        return await _join_page(page, schedule_id, status=422, error=page._("Choose the patient to book for."))
    try:
        entry = await waitlist_api.join_waitlist(page.request, WaitlistEntryCreate(schedule_id=schedule_id,
                                                                                   patient_id=patient_id),
                                                 account, db, clock)
    except GuahaoError as exc:
        return await _join_page(page, schedule_id, status=exc.status, error=exc.message(page.locale),
                                chosen=patient_id)
    return redirect(page, f"/waitlist#entry-{entry.id}")


@router.get("/waitlist")
async def my_waitlist(page: PageDep, error: str | None = None):
    account = page.need_account()
    db, clock = _state(page)
    listing = await waitlist_api.my_waitlist(account, db, clock)
    return render(page, "waitlist/list.html", entries=listing.items, error=error)


@router.post("/waitlist/{entry_id}/leave")
async def leave(page: PageDep, entry_id: EntryId):
    account = page.need_account()
    await form_of(page)
    db, clock = _state(page)
    try:
        await waitlist_api.leave_waitlist(entry_id, account, db, clock)
    except GuahaoError as exc:
        listing = await waitlist_api.my_waitlist(account, db, clock)
        return render(page, "waitlist/list.html", status=exc.status, entries=listing.items,
                      error=exc.message(page.locale))
    return redirect(page, "/waitlist")
