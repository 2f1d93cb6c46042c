"""Home (search, hospitals, my upcoming visits), hospital, department and doctor pages.

Each page calls the JSON API's own route functions (catalog/router.py, scheduling/router.py,
booking/router.py) and renders what they return: the same queries, the same labels, times
already in the hospital's zone. No login is needed, except for "my upcoming visits".
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse

from guahao.booking import router as booking_api
from guahao.catalog import notice_router as notices_api
from guahao.catalog import notices as hospital_notices
from guahao.catalog import photos as catalog_photos
from guahao.catalog import router as catalog_api
from guahao.catalog import rules as hospital_rules
from guahao.catalog import search as catalog_search
from guahao.catalog import service as catalog_service
from guahao.core.errors import InvalidRequest
from guahao.draw import service as draw_service
from guahao.scheduling import availability as scheduling_availability
from guahao.scheduling import domain as scheduling_domain
from guahao.scheduling import router as scheduling_api
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import queries as waitlist_queries
from guahao.web.format import seconds_until
from guahao.web.pages import PageDep, render
from guahao.web.shared_pages import shared_render

router = APIRouter(include_in_schema=False)
CALENDAR_DAYS = 14
UPCOMING_STATES = ("held", "confirmed")


def _deps(page):
    state = page.request.app.state
    return state.db, state.clock


async def _search(page, q: str):
    db, _ = _deps(page)
    q = q.strip()
    if not q or len(q) > catalog_search.MAX_QUERY_LENGTH:
        return None
    try:
        return await catalog_api.search(db, page.locale, q=q, city=None, hospital_id=None, limit=10)
    except InvalidRequest:
        return None


@router.get("/")
async def home(page: PageDep, q: str = "", city: str | None = Query(None, max_length=50),
               near: str | None = Query(None, max_length=60)):
    db, clock = _deps(page)
    results = await _search(page, q) if q else None
    try:
        hospitals = await catalog_api.list_hospitals(db, page.locale, city=city, district=None, level=None,
                                                     keyword=None, near=near, lat=None, lng=None, radius_km=None,
                                                     limit=20, offset=0)
    except InvalidRequest:
        near = None
        hospitals = await catalog_api.list_hospitals(db, page.locale, city=city, district=None, level=None,
                                                     keyword=None, near=None, lat=None, lng=None, radius_km=None,
                                                     limit=20, offset=0)
    everywhere = await catalog_api.list_hospitals(db, page.locale, city=None, district=None, level=None, keyword=None,
                                                  near=None, lat=None, lng=None, radius_km=None, limit=100, offset=0)
    cities = sorted({h.city for h in everywhere.items})
    upcoming = []
    if page.account is not None:
        mine = await booking_api.list_bookings(page.account, db, clock, page.locale, state=None, limit=50, offset=0)
        now = clock.now()
        upcoming = [b for b in mine.items if b.state in UPCOMING_STATES and b.ends_at > now]
        upcoming.sort(key=lambda b: b.starts_at)
    return render(page, "catalog/home.html", q=q, results=results, hospitals=hospitals.items, cities=cities,
                  city=city, near=near, upcoming=upcoming[:3], pinned=await _pinned(db, hospitals.items, clock.now()))


HOME_NOTICES = 3


async def _pinned(db, hospitals, now: dt.datetime) -> list[dict]:
    """Home shows the pinned, active notices of the hospitals it lists (titles only; the
    hospital page has the text and the dates)."""
    names = {h.id: h.name for h in hospitals}
    async with db.read() as session:
        rows = await hospital_notices.active(session, list(names), now)
    return [{"hospital_id": n.hospital_id, "hospital": names[n.hospital_id], "title": n.title}
            for n in rows if n.pinned][:HOME_NOTICES]


@router.get("/search")
async def search(page: PageDep, q: str = ""):
    """The search results alone for htmx (live search); the whole home page otherwise."""
    results = await _search(page, q)
    if page.request.headers.get("hx-request") == "true":
        return render(page, "catalog/_results.html", q=q, results=results)
    return render(page, "catalog/search.html", q=q, results=results)


@router.get("/hospitals/{hospital_id}")
async def hospital(page: PageDep, hospital_id: int,
                   level: str | None = Query(None, pattern="^(general|expert|special)$")):
    db, _ = _deps(page)
    detail = await catalog_api.get_hospital(hospital_id, db, page.locale)
    tree = await catalog_api.department_tree(hospital_id, db)
    _, clock = _deps(page)
    async with db.read() as session:  # the limits the API's summary leaves out, in plain words
        rules = await hospital_rules.get_rules(session, hospital_id)
        notices = await _suspensions(session, hospital_id, rules.tz, clock.now())
        draw_departments = await _draw_departments(session, hospital_id, clock.now())
        waitlist = await waitlist_queries.rules_for(session, hospital_id)
    board = await notices_api.hospital_notices(hospital_id, db, clock)
    return render(page, "catalog/hospital.html", hospital=detail, tree=tree, limits=rules, level=level,
                  notices=notices, board=board, draw_departments=draw_departments, waitlist=waitlist,
                  waitlist_cutoff=_cutoff_words(waitlist.cutoff_minutes_before_visit_day))


async def _draw_departments(session, hospital_id: int, now: dt.datetime) -> list[str]:
    """Names of the departments whose numbers are released by draw (摇号): set so, or with a
    coming clinic in draw mode (a clinic's own setting included)."""
    by_department, _ = await draw_service.list_settings(session, hospital_id)
    ids = {d for d, mode in by_department.items() if mode == "draw"}
    ids |= {s.department_id for s in await scheduling_service.schedules_released_after(session, hospital_id, now)
            if s.release_mode == "draw"}
    departments = await catalog_service.list_departments(session, hospital_id)
    return [d.name for d in departments if d.id in ids]


def _cutoff_words(minutes_before: int) -> tuple[int, str]:
    """(days before the visit day, HH:MM) of the waitlist's cutoff: 60 -> (1, "23:00")."""
    days = -(-minutes_before // 1440) if minutes_before > 0 else 0
    at = (-minutes_before) % 1440
    return days, f"{at // 60:02d}:{at % 60:02d}"


async def _suspensions(session, hospital_id: int, zone, now: dt.datetime) -> list[dict]:
    """停诊通知: the hospital's cancelled clinics of the coming days, for its page."""
    today = scheduling_domain.local_today(now, zone)
    stopped = await scheduling_service.list_schedules(session, hospital_id, today,
                                                      today + dt.timedelta(days=CALENDAR_DAYS - 1), status="suspended")
    doctors = await catalog_service.doctors_by_id(session, {s.doctor_id for s in stopped if s.doctor_id})
    departments = {d.id: d.name for d in await catalog_service.list_departments(session, hospital_id)}
    return [{"date": s.date, "period": s.period, "department": departments.get(s.department_id, ""),
             "doctor": doctors[s.doctor_id].name if s.doctor_id in doctors else None,
             "reason": s.suspended_reason} for s in stopped]


def _chosen_day(availability, day: dt.date | None) -> dt.date | None:
    """The day shown: the one asked for, else the first with anything bookable, else the first."""
    dates = [d.date for d in availability.days]
    if day in dates:
        return day
    for d in availability.days:
        if any(s.state == "bookable" for p in d.periods for s in p.schedules):
            return d.date
    return dates[0] if dates else None


def _day_state(day) -> str:
    states = [s.state for p in day.periods for s in p.schedules]
    if not states:
        return "none"
    for state in ("bookable", "not_yet_released", "full", "suspended", "closed"):
        if state in states:
            return state
    return states[0]


def _calendar(availability, chosen: dt.date | None, level: str | None, now: dt.datetime) -> dict:
    shown = next((d for d in availability.days if d.date == chosen), None)
    return dict(days=availability.days, day_states={d.date: _day_state(d) for d in availability.days},
                chosen=chosen, shown=shown, now=now, seconds_until=seconds_until, level=level,
                source=availability.source, as_of=availability.as_of)  # realtime: the HIS's numbers


def _release_instants(availability) -> list[dt.datetime]:
    """The instants the calendar counts down to (a not yet released clinic's)."""
    return [t for d in availability.days for p in d.periods for s in p.schedules
            for t in (s.release_at, *(sl.release_at for sl in s.slots)) if t is not None]


# The two pages below are the poll storm's (thousands of refreshes a second around a release):
# they are the same for every visitor of a language, so each worker makes one per view and
# version of what it shows (shared_pages.py). The catalogue parts are kept under the
# availability answers' own rule (at most 1 s, a commit here seen at once), so the page is
# never staler than the API; the counts are the API's answer itself.

@dataclass(frozen=True)
class _DepartmentParts:
    info: Any
    doctors: tuple
    hospital: Any
    photos: dict[int, str]


@dataclass(frozen=True)
class _DoctorParts:
    info: Any
    hospital: Any
    photos: dict[int, str]


async def _department_parts(db, department_id: int, locale: str, now: dt.datetime) -> _DepartmentParts:
    async def read() -> _DepartmentParts:
        info = await catalog_api.get_department(department_id, db, locale)
        doctors = await catalog_api.department_doctors(department_id, db, locale)
        hospital = await catalog_api.get_hospital(info.hospital_id, db, locale)
        async with db.read() as session:
            photos = await catalog_photos.photo_tags(session, [d.id for d in doctors])
        return _DepartmentParts(info, tuple(doctors), hospital, photos)

    return await scheduling_availability.kept_like_answers(db, ("department page", department_id, locale), now,
                                                           read)


async def _doctor_parts(db, doctor_id: int, locale: str, now: dt.datetime) -> _DoctorParts:
    async def read() -> _DoctorParts:
        info = await catalog_api.get_doctor(doctor_id, db, locale)
        hospital = await catalog_api.get_hospital(info.hospital_id, db, locale)
        async with db.read() as session:
            photos = await catalog_photos.photo_tags(session, [doctor_id])
        return _DoctorParts(info, hospital, photos)

    return await scheduling_availability.kept_like_answers(db, ("doctor page", doctor_id, locale), now, read)


def _shared(page, template: str, *, view: tuple, parts, availability, now: dt.datetime, values) -> HTMLResponse:
    # an answer with the HIS's counts is made afresh for every request: nothing to reuse
    return shared_render(page, template, view=view, sources=(parts, availability), now=now,
                         instants=lambda: _release_instants(availability), values=values,
                         keep=availability.source not in ("his", "his_unavailable"))


@router.get("/departments/{department_id}")
async def department(page: PageDep, department_id: int, day: dt.date | None = None,
                     level: str | None = Query(None, pattern="^(general|expert|special)$")):
    db, clock = _deps(page)
    now = clock.now()
    parts = await _department_parts(db, department_id, page.locale, now)
    availability = await scheduling_api.department_answer(department_id, db, clock, from_date=None,
                                                          days=CALENDAR_DAYS, registration_level=level,
                                                          his=scheduling_api.his_port(page.request))
    chosen = _chosen_day(availability, day)

    def values() -> dict:
        doctors = [d for d in parts.doctors if not level or d.registration_level == level]
        return dict(department=parts.info, doctors=doctors, titles={d.id: d for d in doctors}, photos=parts.photos,
                    hospital=parts.hospital, base_url=f"/departments/{department_id}",
                    **_calendar(availability, chosen, level, now))

    return _shared(page, "catalog/department.html", view=(chosen, level), parts=parts, availability=availability,
                   now=now, values=values)


@router.get("/doctors/{doctor_id}")
async def doctor(page: PageDep, doctor_id: int, day: dt.date | None = None):
    db, clock = _deps(page)
    now = clock.now()
    parts = await _doctor_parts(db, doctor_id, page.locale, now)
    availability = await scheduling_api.doctor_answer(doctor_id, db, clock, from_date=None, days=CALENDAR_DAYS,
                                                      his=scheduling_api.his_port(page.request))
    chosen = _chosen_day(availability, day)

    def values() -> dict:
        return dict(doctor=parts.info, hospital=parts.hospital, titles={parts.info.id: parts.info},
                    photos=parts.photos, base_url=f"/doctors/{doctor_id}",
                    **_calendar(availability, chosen, None, now))

    return _shared(page, "catalog/doctor.html", view=(chosen,), parts=parts, availability=availability, now=now,
                   values=values)
