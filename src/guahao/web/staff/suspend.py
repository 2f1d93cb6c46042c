"""One session's page for the scheduler (capacities, 停诊 with a preview, resume) and the
doctor's leave: 停诊 over a date range, previewed first.

停诊 is two steps on purpose: the preview lists the bookings that would be revoked, the
refunds and the messages that would go out (booking.suspensions.preview_*), and only the
confirm form, which repeats the reason, suspends (do_suspend_one / do_suspend_leave, audited).
Resuming (do_resume) publishes the session again: bookings the 停诊 revoked stay revoked
(refunded and told), and the seats they freed go to the 候补 queue first, in its order; the
page says how many of each there are before the button is pressed.
"""
from __future__ import annotations

from fastapi import APIRouter

from guahao.booking import suspensions
from guahao.booking.schemas import LeaveRequest, LeaveSuspend, SuspendRequest
from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core.errors import GuahaoError
from guahao.draw import service as draw_service
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import queries as waitlist_queries
from guahao.web.staff import forms
from guahao.web.staff.base import SCHEDULERS, StaffPageDep, _, form_of, local_today, parse, redirect, render
from guahao.web.staff.scheduler import PERIOD_LABELS, STATUS_LABELS

router = APIRouter(prefix="/staff", include_in_schema=False)
NOTICE_LABELS = {"notify.booking_revoked": _("Messages to patients that their booking is revoked"),
                 "payment.refund": _("Refunds to the original payment"),
                 "his.booking_cancelled": _("Cancellations sent to the hospital's HIS")}
LEAVE_PERIODS = ("morning", "afternoon", "evening", "all_day")
MODE_LABELS = {"inherit": _("As the department or hospital rule"), "fifo": _("First come, first served"),
               "draw": _("By draw (摇号)"), "drawn": _("Drawn; the rest first come")}


async def render_session(page, hospital_id: int, schedule_id: int, *, status: int = 200, **extra):
    state = page.request.app.state
    now = state.clock.now()
    async with state.db.read() as session:
        schedule = await scheduling_service.get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id)
        rules = await hospital_rules.get_rules(session, hospital_id)
        slots = await scheduling_service.list_slots(session, schedule.id)
        used = await scheduling_service.live_counts(session, [s.id for s in slots], now)
        doctor = (await catalog_service.doctors_by_id(session, [schedule.doctor_id])).get(schedule.doctor_id)
        _, own_modes = await draw_service.list_settings(session, hospital_id)
        if schedule.status == "suspended":  # what lifting it would do
            extra.setdefault("revoked", await suspensions.revoked_count(session, schedule.id))
            extra.setdefault("waiting", await waitlist_queries.waiting_count(session, schedule.id))
    totals = {"platform": 0, "onsite": 0}
    sold = {"platform": 0, "onsite": 0}
    for slot in slots:
        totals[slot.pool] += slot.capacity
        sold[slot.pool] += used.get(slot.id, 0)
    return render(page, "staff/scheduler/session.html", status=status, schedule=schedule,
                  doctor=doctor.name if doctor else page._("General clinic"), totals=totals, sold=sold,
                  starts=schedule.starts_at.astimezone(rules.tz), release_at=schedule.release_at.astimezone(rules.tz),
                  period_labels=PERIOD_LABELS, status_labels=STATUS_LABELS, notice_labels=NOTICE_LABELS,
                  release_setting=own_modes.get(schedule.id, "inherit"), mode_labels=MODE_LABELS,
                  mode_open=schedule.release_mode != "drawn"
                  and draw_service.timeline(schedule.release_at, rules)["opens_at"] > now, **extra)


@router.get("/hospitals/{hospital_id}/schedules/{schedule_id}")
async def session_page(hospital_id: int, schedule_id: int, page: StaffPageDep, done: str = ""):
    page.need(*SCHEDULERS, hospital_id=hospital_id)
    notices = {"capacity": page._("The capacities were changed."), "suspended": page._(
        "The session is suspended (停诊); revoked bookings are refunded and the patients told."),
        "resumed": page._("The session is open again; freed seats go to the 候补 queue first."),
        "release_mode": page._("The release mode was saved.")}
    return await render_session(page, hospital_id, schedule_id, notice=notices.get(done))


@router.post("/hospitals/{hospital_id}/schedules/{schedule_id}/capacity")
async def capacity(hospital_id: int, schedule_id: int, page: StaffPageDep):
    """New pool capacities; never below the seats sold or held (the error says so)."""
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        platform = forms.integer(form, "platform_capacity")
        onsite = forms.integer(form, "onsite_capacity")
        async with state.db.begin() as session:
            await scheduling_service.do_update_schedule(
                session, schedule_id, now=state.clock.now(), hospital_id=hospital_id, platform_capacity=platform,
                onsite_capacity=onsite, actor_id=staff.staff_id, bookings=state.providers["bookings"])
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await render_session(page, hospital_id, schedule_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedules/{schedule_id}?done=capacity")


@router.post("/hospitals/{hospital_id}/schedules/{schedule_id}/suspend/preview")
async def suspend_preview(hospital_id: int, schedule_id: int, page: StaffPageDep):
    page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(SuspendRequest, {"reason": forms.text(form, "reason")})
    except GuahaoError as exc:
        return await render_session(page, hospital_id, schedule_id, status=exc.status, error=exc.message(page.locale))
    async with state.db.read() as session:
        impact = await suspensions.preview_one(session, schedule_id=schedule_id, hospital_id=hospital_id,
                                               now=state.clock.now())
    return await render_session(page, hospital_id, schedule_id, impact=impact, reason=body.reason)


@router.post("/hospitals/{hospital_id}/schedules/{schedule_id}/suspend")
async def suspend(hospital_id: int, schedule_id: int, page: StaffPageDep):
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(SuspendRequest, {"reason": forms.text(form, "reason")})
        async with state.db.begin() as session:
            await suspensions.do_suspend_one(session, schedule_id=schedule_id, hospital_id=hospital_id,
                                             reason=body.reason, staff_id=staff.staff_id, now=state.clock.now())
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await render_session(page, hospital_id, schedule_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedules/{schedule_id}?done=suspended")


@router.post("/hospitals/{hospital_id}/schedules/{schedule_id}/resume")
async def resume(hospital_id: int, schedule_id: int, page: StaffPageDep):
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    await form_of(page)
    state = page.request.app.state
    try:
        async with state.db.begin() as session:
            await suspensions.do_resume(session, schedule_id=schedule_id, hospital_id=hospital_id,
                                        staff_id=staff.staff_id, now=state.clock.now())
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await render_session(page, hospital_id, schedule_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedules/{schedule_id}?done=resumed")


# --- leave: 停诊 over a date range --------------------------------------------------------------

def _leave_values(form: dict[str, str]) -> dict:
    periods = [p for p in LEAVE_PERIODS if forms.checked(form, f"period_{p}")]
    return {"doctor_id": forms.integer(form, "doctor_id"), "from_date": form.get("from_date", ""),
            "to_date": form.get("to_date", ""), "periods": periods or None}


async def _leave_page(page, hospital_id: int, *, status: int = 200, values: dict | None = None, **extra):
    state = page.request.app.state
    async with state.db.read() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        departments = await catalog_service.list_departments(session, hospital_id)
        doctors = []
        for department in departments:
            if department.parent_id is None:
                doctors += await catalog_service.list_doctors(session, department)
        today = local_today(state.clock.now(), (await hospital_rules.get_rules(session, hospital_id)).tz)
    return render(page, "staff/scheduler/leave.html", status=status, doctors=doctors, periods=LEAVE_PERIODS,
                  period_labels=PERIOD_LABELS, notice_labels=NOTICE_LABELS,
                  values=values or {"from_date": today.isoformat(), "to_date": today.isoformat()}, **extra)


@router.get("/hospitals/{hospital_id}/leave")
async def leave_form(hospital_id: int, page: StaffPageDep, suspended: int | None = None):
    page.need(*SCHEDULERS, hospital_id=hospital_id)
    notice = page._("%(count)s sessions were suspended (停诊).") % {"count": suspended} if suspended is not None else None
    return await _leave_page(page, hospital_id, notice=notice)


@router.post("/hospitals/{hospital_id}/leave/preview")
async def leave_preview(hospital_id: int, page: StaffPageDep):
    page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(LeaveRequest, _leave_values(form))
        async with state.db.read() as session:
            impact = await suspensions.preview_leave(session, hospital_id=hospital_id, doctor_id=body.doctor_id,
                                                     first=body.from_date, last=body.to_date, periods=body.periods,
                                                     now=state.clock.now())
    except GuahaoError as exc:
        return await _leave_page(page, hospital_id, status=exc.status, error=exc.message(page.locale), values=form)
    return await _leave_page(page, hospital_id, values=form, impact=impact, reason=forms.text(form, "reason"))


@router.post("/hospitals/{hospital_id}/leave")
async def leave_suspend(hospital_id: int, page: StaffPageDep):
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(LeaveSuspend, {**_leave_values(form), "reason": forms.text(form, "reason")})
        async with state.db.begin() as session:
            done = await suspensions.do_suspend_leave(
                session, hospital_id=hospital_id, doctor_id=body.doctor_id, first=body.from_date, last=body.to_date,
                periods=body.periods, reason=body.reason, staff_id=staff.staff_id, now=state.clock.now())
    except GuahaoError as exc:
        return await _leave_page(page, hospital_id, status=exc.status, error=exc.message(page.locale), values=form)
    return redirect(page, f"/staff/hospitals/{hospital_id}/leave?suspended={len(done)}")


