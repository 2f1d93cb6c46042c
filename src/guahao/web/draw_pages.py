"""The draw page (摇号): what the draw is, its commitment, a countdown to the result, entering
it, and the result. Entering is the API's own route function (draw/router.py), so the page
and the API cannot disagree."""
from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Path

from guahao.booking import queries as booking_queries
from guahao.core.errors import GuahaoError, NotFound
from guahao.draw import queries as draw_queries
from guahao.draw import router as draw_api
from guahao.draw.schemas import DrawEntryCreate
from guahao.patients import router as patients_api
from guahao.scheduling import service as scheduling_service
from guahao.web.format import seconds_until
from guahao.web.pages import Page, PageDep, form_of, redirect, render

router = APIRouter(include_in_schema=False)
ScheduleId = Annotated[int, Path(ge=1, le=2**63 - 1)]


async def _draw_page(page: Page, schedule_id: int, *, error: str | None = None, status: int = 200,
                     entered: bool = False, another: bool = False):
    """After entering, the page shows the receipt, the countdown to the result and the rules,
    not the entry form again (a family account may still enter another of its patients)."""
    state = page.request.app.state
    now = state.clock.now()
    async with state.db.read() as session:
        view = await draw_queries.view(session, schedule_id)
        slots = await scheduling_service.list_slots(session, schedule_id, pool="platform")
        if not slots:
            raise NotFound("schedule")
        ctx = await booking_queries.slot_context(session, min(slots, key=lambda s: (s.starts_at, s.id)).id)
        mine = (await draw_queries.entries_of_account(session, schedule_id, page.account.account_id)
                if page.account is not None else [])
    patients = []
    if page.account is not None:
        patients = (await patients_api.list_patients(page.request, page.account, state.db, state.clock)).items
    names = {p.id: p.name for p in patients}
    in_draw = {e.patient_id for e in mine}
    open_patients = [p for p in patients if p.id not in in_draw]
    zone = ctx.zone
    phase = ("before" if now < view.opens_at else "open" if now < view.closes_at and view.status == "open"
             else "drawing" if view.status != "allocated" else "done")
    can_enter = phase in ("before", "open")
    show_form = can_enter and (not mine or (another and bool(open_patients)) or error is not None)
    return render(page, "draw/draw.html", status=status, view=view, ctx=ctx, zone=zone, phase=phase,
                  open_patients=open_patients, show_form=show_form,
                  show_form_link=can_enter and not show_form and bool(open_patients),
                  starts_at=ctx.starts_at.astimezone(zone), ends_at=ctx.ends_at.astimezone(zone),
                  opens_at=view.opens_at.astimezone(zone), closes_at=view.closes_at.astimezone(zone),
                  result_at=view.result_at.astimezone(zone), to_open=seconds_until(view.opens_at, now),
                  to_close=seconds_until(view.closes_at, now), to_result=seconds_until(view.result_at, now),
                  patients=patients, names=names, mine=mine, error=error, entered=entered,
                  window=int((view.closes_at - view.release_at).total_seconds()))


@router.get("/schedules/{schedule_id}/draw")
async def draw_page(page: PageDep, schedule_id: ScheduleId, entered: int = 0, another: int = 0):
    return await _draw_page(page, schedule_id, entered=bool(entered), another=bool(another))


@router.post("/schedules/{schedule_id}/draw")
async def enter_draw(page: PageDep, schedule_id: ScheduleId):
    state = page.request.app.state
    arrived_at = state.clock.now()
    account = page.need_account()
    form = await form_of(page)
    try:
        patient_id = int(form.get("patient_id", "0"))
    except ValueError:
        patient_id = 0
    if patient_id <= 0:
        return await _draw_page(page, schedule_id, status=422, error=page._("Choose the patient to enter."))
    body = DrawEntryCreate(patient_id=patient_id, waitlist_opt_in=form.get("waitlist_opt_in") == "1")
    try:
        answer = await draw_api.enter_draw(page.request, arrived_at, schedule_id, body, account, state.db, state.clock)
    except GuahaoError as exc:
        return await _draw_page(page, schedule_id, status=exc.status, error=exc.message(page.locale))
    if answer.status_code >= 400:  # never expected: refusals are raised
        return await _draw_page(page, schedule_id, status=answer.status_code,
                                error=json.loads(answer.body).get("detail"))
    return redirect(page, f"/schedules/{schedule_id}/draw?entered=1")
