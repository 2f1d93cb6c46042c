"""The scheduler's pages: the weekly template grid (doctor × weekday × period, a capacity per
pool in each cell), generating a date range, and the publishing calendar (release instants,
seats sold per session, publish).

Writes call the scheduling feature's functions the JSON routes call (scheduling.templates,
scheduling.service), so the same conflicts, capacity checks and audit rows apply.
"""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core.errors import GuahaoError, InvalidRequest
from guahao.scheduling import service as scheduling_service
from guahao.scheduling import templates
from guahao.scheduling.schemas import GenerateRequest, TemplateCreate, TemplateUpdate
from guahao.web.staff import forms
from guahao.web.staff.base import (
    NAV,
    SCHEDULERS,
    NavItem,
    StaffPageDep,
    _,
    form_of,
    local_today,
    parse,
    redirect,
    render,
)

router = APIRouter(prefix="/staff", include_in_schema=False)

NAV.extend([
    NavItem("/staff/hospitals/{hospital_id}/schedule-templates", _("Weekly templates"), SCHEDULERS),
    NavItem("/staff/hospitals/{hospital_id}/schedules", _("Publishing calendar"), SCHEDULERS),
    NavItem("/staff/hospitals/{hospital_id}/leave", _("Doctor leave (停诊)"), SCHEDULERS),
])

GRID_PERIODS = ("morning", "afternoon", "evening")
PERIOD_LABELS = {"morning": _("Morning"), "afternoon": _("Afternoon"), "evening": _("Evening"),
                 "all_day": _("All day")}
STATUS_LABELS = {"draft": _("Draft"), "published": _("Published"), "suspended": _("Suspended (停诊)")}
CALENDAR_DAYS = 14


def _scope(staff) -> int | None:
    return None if staff.is_operator else staff.hospital_id


# --- the weekly template grid -----------------------------------------------------------------

async def _grid(page, hospital_id: int, department_id: int | None):
    """(departments, the department shown, its rows [(doctor_id or 0, label)], cells)."""
    async with page.request.app.state.db.read() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        departments = await catalog_service.list_departments(session, hospital_id)
        department = next((d for d in departments if d.id == department_id), None) or (
            departments[0] if departments else None)
        rows: list[tuple[int, str]] = []
        cells: dict[tuple[int, int, str], object] = {}
        if department is not None:
            doctors = await catalog_service.list_doctors(session, department)
            rows = [(0, page._("General clinic"))] + [(d.id, d.name) for d in doctors]
            ids = {d.id for d in doctors}
            for t in await templates.list_templates(session, hospital_id):
                if (t.doctor_id in ids) or (t.doctor_id is None and t.department_id == department.id):
                    cells[(t.doctor_id or 0, t.weekday, t.period)] = t
    return departments, department, rows, cells


@router.get("/hospitals/{hospital_id}/schedule-templates")
async def template_grid(hospital_id: int, page: StaffPageDep, department_id: int | None = None, saved: int = 0):
    page.need(*SCHEDULERS, hospital_id=hospital_id)
    return await _grid_page(page, hospital_id, department_id, notice=page._("The weekly templates were saved.")
                            if saved else None)


async def _grid_page(page, hospital_id: int, department_id: int | None, *, status: int = 200, **extra):
    departments, department, rows, cells = await _grid(page, hospital_id, department_id)
    async with page.request.app.state.db.read() as session:
        today = local_today(page.request.app.state.clock.now(), (await hospital_rules.get_rules(session, hospital_id)).tz)
    return render(page, "staff/scheduler/templates.html", status=status, departments=departments,
                  department=department, rows=rows, cells=cells, periods=GRID_PERIODS, period_labels=PERIOD_LABELS,
                  weekdays=range(7), today=today, generate_to=today + dt.timedelta(days=13), **extra)


def _cell(form: dict[str, str], row: int, weekday: int, period: str) -> tuple[int, int] | None:
    key = f"c_{row}_{weekday}_{period}"
    if not form.get(f"{key}_p", "").strip() and not form.get(f"{key}_o", "").strip():
        return None
    return (forms.integer(form, f"{key}_p", required=False) or 0, forms.integer(form, f"{key}_o", required=False) or 0)


@router.post("/hospitals/{hospital_id}/schedule-templates")
async def template_grid_save(hospital_id: int, page: StaffPageDep):
    """The grid of one department in one unit of work: a filled cell creates or updates its
    template, an emptied cell deletes it (sessions generated from it stay)."""
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    department_id = forms.integer(form, "department_id", required=False)
    _departments, department, rows, cells = await _grid(page, hospital_id, department_id)
    if department is None or department.id != department_id:
        # never fall back to another department: its empty cells would delete its templates
        raise InvalidRequest(field="department_id")
    now = state.clock.now()
    try:
        async with state.db.begin() as session:
            for row, _label in rows:
                for weekday in range(7):
                    for period in GRID_PERIODS:
                        wanted, existing = _cell(form, row, weekday, period), cells.get((row, weekday, period))
                        await _apply_cell(session, hospital_id, department.id, row, weekday, period, wanted, existing,
                                          now=now, staff_id=staff.staff_id)
    except GuahaoError as exc:
        return await _grid_page(page, hospital_id, department.id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedule-templates?department_id={department.id}&saved=1")


async def _apply_cell(session, hospital_id, department_id, row, weekday, period, wanted, existing, *, now, staff_id):
    if wanted is None:
        if existing is not None:
            await templates.do_delete_template(session, existing.id, now=now, hospital_id=hospital_id,
                                               actor_id=staff_id)
        return
    platform, onsite = wanted
    if existing is None:
        data = parse(TemplateCreate, {"department_id": department_id if row == 0 else None,
                                      "doctor_id": row or None, "weekday": weekday, "period": period,
                                      "platform_capacity": platform, "onsite_capacity": onsite})
        await templates.do_create_template(session, hospital_id, data, now=now, actor_id=staff_id)
    elif (existing.platform_capacity, existing.onsite_capacity, existing.active) != (platform, onsite, True):
        data = parse(TemplateUpdate, {"platform_capacity": platform, "onsite_capacity": onsite, "active": True})
        await templates.do_update_template(session, existing.id, data, now=now, hospital_id=hospital_id,
                                           actor_id=staff_id)


@router.post("/hospitals/{hospital_id}/schedules/generate")
async def generate(hospital_id: int, page: StaffPageDep):
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(GenerateRequest, {"from_date": form.get("from_date", ""), "to_date": form.get("to_date", ""),
                                       "publish": forms.checked(form, "publish")})
        async with state.db.begin() as session:
            await hospital_rules.get_rules(session, hospital_id)
            outcome = await scheduling_service.do_generate(session, hospital_id, body.from_date, body.to_date,
                                                           body.publish, state.clock.now(), actor_id=staff.staff_id)
    except GuahaoError as exc:
        return await _grid_page(page, hospital_id, None, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedules?from={body.from_date}"
                          f"&created={outcome.created}&skipped={outcome.skipped}")


# --- the publishing calendar ------------------------------------------------------------------

async def calendar_rows(session, hospital_id: int, first: dt.date, last: dt.date, now: dt.datetime):
    """Per day, its sessions with names, pool capacities, seats in use and the release instant."""
    rules = await hospital_rules.get_rules(session, hospital_id)
    schedules = await scheduling_service.list_schedules(session, hospital_id, first, last)
    totals = await scheduling_service.pool_totals(session, [s.id for s in schedules])
    doctors = await catalog_service.doctors_by_id(session, {s.doctor_id for s in schedules if s.doctor_id})
    departments = {d.id: d.name for d in await catalog_service.list_departments(session, hospital_id)}
    days: dict[dt.date, list[dict]] = {}
    for s in schedules:
        slots = await scheduling_service.list_slots(session, s.id)
        used = await scheduling_service.live_counts(session, [x.id for x in slots], now)
        doctor = doctors.get(s.doctor_id)
        days.setdefault(s.date, []).append({
            "schedule": s, "doctor": doctor.name if doctor else None, "department": departments.get(s.department_id, ""),
            "release_at": s.release_at.astimezone(rules.tz), "platform": totals[s.id]["platform"],
            "onsite": totals[s.id]["onsite"], "used": sum(used.values()),
            "released": s.status == "published" and s.release_at <= now})
    return rules, days


@router.get("/hospitals/{hospital_id}/schedules")
async def calendar(hospital_id: int, page: StaffPageDep, created: int | None = None,
                   skipped: int | None = None, published: int | None = None):
    page.need(*SCHEDULERS, hospital_id=hospital_id)
    return await _calendar_page(page, hospital_id, page.request.query_params.get("from"), created=created,
                                skipped=skipped, published=published)


async def _calendar_page(page, hospital_id: int, first_text: str | None, *, status: int = 200, created=None,
                         skipped=None, published=None, **extra):
    state = page.request.app.state
    now = state.clock.now()
    async with state.db.read() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        zone = (await hospital_rules.get_rules(session, hospital_id)).tz
        try:
            first = dt.date.fromisoformat(first_text) if first_text else local_today(now, zone)
        except ValueError:
            first = local_today(now, zone)
        last = first + dt.timedelta(days=CALENDAR_DAYS - 1)
        _rules, days = await calendar_rows(session, hospital_id, first, last, now)
    notice = None
    if created is not None:
        notice = page._("Generated %(created)s sessions (%(skipped)s already existed).") % {
            "created": created, "skipped": skipped or 0}
    elif published is not None:
        notice = page._("Published %(count)s sessions.") % {"count": published}
    dates = [first + dt.timedelta(days=i) for i in range(CALENDAR_DAYS)]
    return render(page, "staff/scheduler/calendar.html", status=status, days=days, dates=dates, first=first,
                  last=last, previous=first - dt.timedelta(days=CALENDAR_DAYS), next=last + dt.timedelta(days=1),
                  period_labels=PERIOD_LABELS, status_labels=STATUS_LABELS,
                  drafts=sum(1 for rows in days.values() for r in rows if r["schedule"].status == "draft"),
                  notice=notice, **extra)


@router.post("/hospitals/{hospital_id}/schedules/publish")
async def publish_range(hospital_id: int, page: StaffPageDep):
    """Publish every draft of the days shown; each in its own unit of work, as the API's
    publish of one schedule."""
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        first = dt.date.fromisoformat(form.get("from_date", ""))
        last = dt.date.fromisoformat(form.get("to_date", ""))
    except ValueError as exc:
        raise InvalidRequest(field="from_date") from exc
    if last < first or (last - first).days >= 62:
        raise InvalidRequest(field="to_date")
    async with state.db.read() as session:
        drafts = await scheduling_service.list_schedules(session, hospital_id, first, last, status="draft")
    count = 0
    for schedule in drafts:
        try:
            async with state.db.begin() as session:
                await scheduling_service.do_publish(session, schedule.id, now=state.clock.now(),
                                                    hospital_id=hospital_id, actor_id=staff.staff_id)
            count += 1
        except GuahaoError:
            continue  # published meanwhile by someone else: nothing to do
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedules?from={first}&published={count}")


@router.post("/hospitals/{hospital_id}/schedules/{schedule_id}/publish")
async def publish_one(hospital_id: int, schedule_id: int, page: StaffPageDep):
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    await form_of(page)
    state = page.request.app.state
    async with state.db.begin() as session:
        schedule = await scheduling_service.do_publish(session, schedule_id, now=state.clock.now(),
                                                       hospital_id=hospital_id, actor_id=staff.staff_id)
        day = schedule.date
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedules?from={day}&published=1")
