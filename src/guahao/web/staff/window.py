"""The front desk (窗口): today's roster per doctor and period, finding a booking (booking
code, the scanned QR text, ID number or phone), the booking with masked data and an audited
reveal, check-in with identity confirmation, completion, void with a reason, and walk-ins.

Each action is the one the JSON routes call (booking.window_actions, booking.hospital_actions)
with the request schema of the route (booking.schemas), so the page and the API accept and
refuse the same things. Lookups by ID number or phone are POSTed, never put in a URL.
"""
from __future__ import annotations

import datetime as dt
import re

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from guahao.booking import hospital_actions, reasons, views, window_actions
from guahao.booking.lifecycle import Actor
from guahao.booking.schemas import RevealRequest, VoidRequest, WalkInCreate, WindowCheckIn
from guahao.booking.views import booking_read
from guahao.catalog import service as catalog_service
from guahao.core.errors import GuahaoError, InvalidRequest
from guahao.core.localtime import localize
from guahao.scheduling import service as scheduling_service
from guahao.web.staff.base import WINDOW, StaffPageDep, _, form_of, local_today, parse, redirect, render

router = APIRouter(prefix="/staff/hospitals/{hospital_id}", include_in_schema=False)
ID_TYPES = ("resident_id", "passport", "hk_macau_permit", "taiwan_permit")
CODE = re.compile(r"(?<!\d)(\d{8})(?!\d)")
PHONE = re.compile(r"^(?:\+?86)?1\d{10}$")
ID_NUMBER = re.compile(r"^(?:\d{17}[\dXx]|\d{15})$")


def classify(raw: str, kind: str = "auto") -> dict[str, str]:
    """What the desk typed or scanned, as the search criterion: a booking code (8 digits, also
    inside a longer scanned QR text), a mainland mobile number, or an ID number; `kind` forces
    one. {} when it cannot be told."""
    text = re.sub(r"[\s-]", "", raw or "")
    if kind in ("code", "id_number", "phone"):
        if kind == "code":
            found = CODE.search(text)
            return {"code": found.group(1)} if found else {}
        return {kind: text} if text else {}
    if re.fullmatch(r"\d{8}", text):
        return {"code": text}
    if PHONE.match(text):
        return {"phone": text}
    if ID_NUMBER.match(text):
        return {"id_number": text}
    found = CODE.search(raw or "")  # a scanned QR text that carries the code among other text
    return {"code": found.group(1)} if found else ({"id_number": text} if len(text) >= 5 else {})


async def _sessions_of_day(session, hospital_id: int, day: dt.date, *, status: str | None = None):
    """The day's sessions with their doctor and department names, in period order."""
    schedules = await scheduling_service.list_schedules(session, hospital_id, day, day, status=status)
    doctors = await catalog_service.doctors_by_id(session, [s.doctor_id for s in schedules if s.doctor_id])
    departments = {d.id: d.name for d in await catalog_service.list_departments(session, hospital_id)}
    return [{"id": s.id, "period": s.period, "status": s.status, "starts_at": s.starts_at,
             "doctor": doctors[s.doctor_id].name if s.doctor_id in doctors else "",
             "department": departments.get(s.department_id, "")} for s in schedules]


@router.get("/window")
async def window(page: StaffPageDep, hospital_id: int, date: dt.date | None = None):
    """The day's roster (today unless `date`), one table per session, in visit-number order."""
    page.need(*WINDOW, hospital_id=hospital_id)
    state = page.request.app.state
    async with state.db.read() as session:
        zone = await catalog_service.zone_of(session, hospital_id)
        day = date or local_today(state.clock.now(), zone)
        sessions = await _sessions_of_day(session, hospital_id, day)
        entries = await views.roster(session, hospital_id=hospital_id, date=day)
    entries = localize(entries, zone)
    by_session = {s["id"]: [e for e in entries if e.schedule_id == s["id"]] for s in sessions}
    sessions = localize(sessions, zone)
    return render(page, "staff/window.html", day=day, sessions=sessions, by_session=by_session,
                  hospital_id=hospital_id, q="", kind="auto", results=None)


@router.post("/window/search")
async def search(page: StaffPageDep, hospital_id: int):
    """Find bookings; the answer is the results page itself (a read, so no redirect, and the
    ID number or phone stays out of every URL)."""
    page.need(*WINDOW, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    q, kind = form.get("q", "")[:200], form.get("kind", "auto")
    criterion = classify(q, kind)
    now = state.clock.now()
    results, error = [], None
    if not criterion:
        error = page._("Type or scan a booking code, an ID number or a mobile number.")
    else:
        try:
            async with state.db.read() as session:
                zone = await catalog_service.zone_of(session, hospital_id)
                found = await window_actions.find_bookings(session, hospital_id=hospital_id,
                                                           today=local_today(now, zone), **criterion)
                results = [await booking_read(session, b, now) for b in found]
        except GuahaoError as exc:
            error = exc.message(page.locale)
    # htmx swaps only 2xx answers, so its partial carries a refusal with 200; the full page says 422
    htmx = page.request.headers.get("hx-request") == "true"
    return render(page, "staff/_results.html" if htmx else "staff/search.html",
                  status=422 if error and not htmx else 200, hospital_id=hospital_id, results=results,
                  error=error, q=q if "code" in criterion else "", kind=kind)


# --- one booking --------------------------------------------------------------------------------

async def _detail(page, hospital_id: int, booking_id: int, *, status: int = 200, **values) -> HTMLResponse:
    state = page.request.app.state
    now = state.clock.now()
    async with state.db.read() as session:
        booking = await hospital_actions.find_for_hospital(session, hospital_id=hospital_id, booking_id=booking_id)
        read = await booking_read(session, booking, now, locale=page.locale)
        has_reason = await reasons.text_of(session, booking.id) is not None  # not shown: only whether
    return render(page, "staff/booking.html", status=status, hospital_id=hospital_id, b=read, has_reason=has_reason,
                  **values)


DONE = {"checked_in": _("Checked in."), "completed": _("Marked as completed."),
        "voided": _("The booking was voided; a paid fee is refunded and the patient is told by SMS."),
        "walk_in": _("Walk-in registered and checked in.")}


@router.get("/bookings/{booking_id}")
async def booking(page: StaffPageDep, hospital_id: int, booking_id: int, done: str | None = None):
    page.need(*WINDOW, hospital_id=hospital_id)
    notice = page._(DONE[done]) if done in DONE else None
    return await _detail(page, hospital_id, booking_id, notice=notice)


@router.post("/bookings/{booking_id}/visit-reason")
async def visit_reason(page: StaffPageDep, hospital_id: int, booking_id: int):
    """The patient's 病情描述 for this booking, read on purpose and audited (booking/reasons.py,
    as GET /api/v1/staff/bookings/{id}); the platform operator gets nothing."""
    staff = page.need(*WINDOW, hospital_id=hospital_id)
    await form_of(page)
    state = page.request.app.state
    async with state.db.begin() as session:
        await hospital_actions.find_for_hospital(session, hospital_id=hospital_id, booking_id=booking_id)
        text = await reasons.do_read_for_staff(session, booking_id, hospital_id=None if staff.is_operator
                                               else hospital_id, staff_id=staff.staff_id, now=state.clock.now())
    return await _detail(page, hospital_id, booking_id, visit_reason=text)


@router.post("/bookings/{booking_id}/reveal")
async def reveal(page: StaffPageDep, hospital_id: int, booking_id: int):
    """The full name and ID number for the person at the desk: audited, shown on this answer
    only (no-store), never stored in a URL or a later page."""
    staff = page.need(*WINDOW, hospital_id=hospital_id)
    await form_of(page)
    state = page.request.app.state
    async with state.db.begin() as session:
        shown = await window_actions.do_reveal(session, hospital_id=hospital_id, booking_id=booking_id,
                                               staff_id=staff.staff_id, now=state.clock.now(),
                                               purpose=RevealRequest().purpose)
    return await _detail(page, hospital_id, booking_id, revealed=shown)


async def _act(page, hospital_id: int, booking_id: int, done: str, run) -> HTMLResponse:
    """Run one state change in its own transaction; a refusal re-renders the booking with the
    problem's message, success goes back to the booking (post/redirect/get)."""
    state = page.request.app.state
    try:
        async with state.db.begin() as session:
            await run(session, state.clock.now())
    except GuahaoError as exc:
        return await _detail(page, hospital_id, booking_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/bookings/{booking_id}?done={done}")


@router.post("/bookings/{booking_id}/check-in")
async def check_in(page: StaffPageDep, hospital_id: int, booking_id: int):
    """签到 after reading the patient's document: the number must be the patient's."""
    staff = page.need(*WINDOW, hospital_id=hospital_id)
    form = await form_of(page)

    async def run(session, now):
        body = parse(WindowCheckIn, {"id_number": form.get("id_number", "").strip()})
        await window_actions.do_window_check_in(session, hospital_id=hospital_id, booking_id=booking_id,
                                                id_number=body.id_number, actor=Actor("staff", staff.staff_id),
                                                now=now)
    return await _act(page, hospital_id, booking_id, "checked_in", run)


@router.post("/bookings/{booking_id}/complete")
async def complete(page: StaffPageDep, hospital_id: int, booking_id: int):
    staff = page.need(*WINDOW, hospital_id=hospital_id)
    await form_of(page)

    async def run(session, now):
        found = await hospital_actions.find_for_hospital(session, hospital_id=hospital_id, booking_id=booking_id)
        await hospital_actions.do_complete(session, found, actor=Actor("staff", staff.staff_id), now=now)
    return await _act(page, hospital_id, booking_id, "completed", run)


@router.post("/bookings/{booking_id}/void")
async def void(page: StaffPageDep, hospital_id: int, booking_id: int):
    """The hospital cancels this booking: refund and SMS follow from the action's outbox rows."""
    staff = page.need(*WINDOW, hospital_id=hospital_id)
    form = await form_of(page)

    async def run(session, now):
        body = parse(VoidRequest, {"reason": form.get("reason", "").strip()})
        await window_actions.do_void(session, hospital_id=hospital_id, booking_id=booking_id, reason=body.reason,
                                     staff_id=staff.staff_id, now=now)
    return await _act(page, hospital_id, booking_id, "voided", run)


# --- walk-ins ------------------------------------------------------------------------------------

async def _walk_in_page(page, hospital_id: int, *, status: int = 200, values: dict | None = None, error=None):
    state = page.request.app.state
    async with state.db.read() as session:
        zone = await catalog_service.zone_of(session, hospital_id)
        sessions = await _sessions_of_day(session, hospital_id, local_today(state.clock.now(), zone),
                                          status="published")
    return render(page, "staff/walk_in.html", status=status, hospital_id=hospital_id, error=error,
                  sessions=localize(sessions, zone), id_types=ID_TYPES, values=values or {"id_type": "resident_id"})


@router.get("/walk-in")
async def walk_in_form(page: StaffPageDep, hospital_id: int):
    page.need(*WINDOW, hospital_id=hospital_id)
    return await _walk_in_page(page, hospital_id)


@router.post("/walk-in")
async def walk_in(page: StaffPageDep, hospital_id: int):
    """现场挂号 into today's on-site pool (local mode), checked in at once."""
    staff = page.need(*WINDOW, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    values = {k: form.get(k, "").strip() for k in ("schedule_id", "name", "id_type", "id_number", "phone",
                                                   "birth_date", "sex")}
    try:
        body = parse(WalkInCreate, {k: v for k, v in values.items() if v and k != "schedule_id"})
        if not values["schedule_id"].isdigit():
            raise InvalidRequest(field="schedule_id")
        person = window_actions.WalkIn(name=body.name, id_type=body.id_type, id_number=body.id_number,
                                       phone=body.phone, birth_date=body.birth_date, sex=body.sex)
        async with state.db.begin() as session:
            booking = await window_actions.do_register_walk_in(
                session, hospital_id=hospital_id, schedule_id=int(values["schedule_id"]), person=person,
                staff_id=staff.staff_id, now=state.clock.now())
    except GuahaoError as exc:
        # personal data is typed again rather than echoed into the page (no unmasked data on pages)
        kept = {k: values[k] for k in ("schedule_id", "id_type", "birth_date", "sex")}
        return await _walk_in_page(page, hospital_id, status=exc.status, values=kept,
                                   error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/bookings/{booking.id}?done=walk_in")
