"""Read and search of the public resources: Location, HealthcareService, Practitioner,
PractitionerRole, Schedule and Slot. Public like the JSON API's catalog and availability;
schedules and slots only once released (never drafts, never before `release_at`)."""
from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request

from guahao.catalog import service as catalog_service
from guahao.core.clock import SHANGHAI
from guahao.core.errors import GuahaoError, InvalidRequest, NotFound
from guahao.fhir import mapping, params
from guahao.fhir.outcome import FhirJSON, FhirRoute
from guahao.scheduling import availability
from guahao.scheduling.domain import local_today

router = APIRouter(route_class=FhirRoute)
EVER = (dt.date(2000, 1, 1), dt.date(2999, 12, 31))
# the platform's default zone: "today" for searches across hospitals
PLATFORM_ZONE = SHANGHAI


def base_of(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir/R4"


def searchset(request: Request, resources: list[dict[str, Any]], *, count: int, offset: int,
              total: int | None = None) -> FhirJSON:
    """A page of a search: `total` counts every match, `_count` / `_offset` cut the page. Given
    `total`, `resources` is that page already (cut in SQL); without, the whole result, cut here."""
    if total is None:
        total, resources = len(resources), resources[offset:offset + count]
    found = mapping.bundle("searchset", resources, base=base_of(request), total=total, link=str(request.url))
    if offset + count < total:  # every value of a repeated parameter kept (date=ge…&date=le…)
        kept = [(k, v) for k, v in request.query_params.multi_items() if k not in ("_offset", "_count")]
        query = urlencode([*kept, ("_offset", str(offset + count)), ("_count", str(count))])
        found["link"].append({"relation": "next", "url": str(request.url.replace(query=query))})
    return FhirJSON(found)


def _page(request: Request) -> dict[str, int]:
    q = request.query_params
    return {"count": params.count(q.get("_count")), "offset": params.offset(q.get("_offset"))}


async def _hospital(session, hospital_id: int):
    return await catalog_service.get_hospital_or_raise(session, hospital_id)


async def _exists(getter, *args) -> Any:
    try:
        return await getter(*args)
    except GuahaoError:
        return None


def search_too_wide(field: str) -> InvalidRequest:
    """A search that would list a whole country (every department, every doctor) must name a place."""
    return InvalidRequest(field=field)


def _int_id(resource_id: str, what: str) -> int:
    if not resource_id.isdigit() or len(resource_id) > 18:
        raise NotFound(what)
    return int(resource_id)


# --- Location: a hospital ---------------------------------------------------------------

@router.get("/Location")
async def search_locations(request: Request):
    """Active hospitals by `_id`, `name` (also pinyin) or `address-city`."""
    q = request.query_params
    page = _page(request)
    async with request.app.state.db.read() as session:
        wanted = params.ids(q.get("_id"))
        if wanted is not None:
            rows = [h for h in [await _exists(_hospital, session, i) for i in wanted] if h is not None]
            return searchset(request, [mapping.location(h) for h in rows], **page)
        found, total = await catalog_service.list_hospitals(session, city=q.get("address-city"), keyword=q.get("name"),
                                                           limit=page["count"], offset=page["offset"])
    return searchset(request, [mapping.location(h) for h, _ in found], total=total, **page)


@router.get("/Location/{resource_id}")
async def read_location(resource_id: str, request: Request):
    """One hospital as a Location."""
    async with request.app.state.db.read() as session:
        hospital = await catalog_service.get_hospital_or_raise(session, _int_id(resource_id, "hospital"))
    return FhirJSON(mapping.location(hospital))


# --- HealthcareService: a department ----------------------------------------------------

@router.get("/HealthcareService")
async def search_services(request: Request):
    """Departments by `_id`, or all of one hospital (`location=Location/<id>`)."""
    q = request.query_params
    page = _page(request)
    hospital_id = params.reference(q.get("location"), "Location", "location")
    wanted = params.ids(q.get("_id"))
    if hospital_id is None and wanted is None:
        raise search_too_wide("location")
    async with request.app.state.db.read() as session:
        if wanted is not None:
            departments = [d for d in [await _exists(catalog_service.get_department_or_raise, session, i)
                                       for i in wanted] if d is not None]
            if hospital_id is not None:
                departments = [d for d in departments if d.hospital_id == hospital_id]
        else:
            await catalog_service.get_hospital_or_raise(session, hospital_id)
            departments = await catalog_service.list_departments(session, hospital_id)
        hospitals = {d.hospital_id: await _hospital(session, d.hospital_id) for d in departments}
    return searchset(request, [mapping.healthcare_service(d, hospitals[d.hospital_id]) for d in departments], **page)


@router.get("/HealthcareService/{resource_id}")
async def read_service(resource_id: str, request: Request):
    """One department as a HealthcareService."""
    async with request.app.state.db.read() as session:
        department = await catalog_service.get_department_or_raise(session, _int_id(resource_id, "department"))
        hospital = await _hospital(session, department.hospital_id)
    return FhirJSON(mapping.healthcare_service(department, hospital))


# --- Practitioner and PractitionerRole: a doctor ----------------------------------------

async def _doctors(session, q, *, role: bool) -> list:
    wanted = params.ids(q.get("_id"))
    hospital_id = params.reference(q.get("location"), "Location", "location") if role else None
    service_id = params.reference(q.get("service"), "HealthcareService", "service") if role else None
    practitioner_id = params.reference(q.get("practitioner"), "Practitioner", "practitioner") if role else None
    if practitioner_id is not None:
        wanted = [practitioner_id] if wanted is None else [i for i in wanted if i == practitioner_id]
    if wanted is not None:
        doctors = [d for d in [await _exists(catalog_service.get_doctor_or_raise, session, i) for i in wanted]
                   if d is not None]
    elif service_id is not None:
        department = await catalog_service.get_department_or_raise(session, service_id)
        doctors = await catalog_service.list_doctors(session, department)
    elif hospital_id is not None:
        await catalog_service.get_hospital_or_raise(session, hospital_id)
        doctors, seen = [], set()
        for department in await catalog_service.list_departments(session, hospital_id):
            if department.parent_id is None:
                for d in await catalog_service.list_doctors(session, department):
                    if d.id not in seen:
                        seen.add(d.id)
                        doctors.append(d)
    else:
        raise search_too_wide("location" if role else "_id")
    if hospital_id is not None:
        doctors = [d for d in doctors if d.hospital_id == hospital_id]
    if service_id is not None and wanted is not None:  # ids asked for within one department
        doctors = [d for d in doctors if d.department_id == service_id]
    return doctors


@router.get("/Practitioner")
async def search_practitioners(request: Request):
    """Doctors by `_id` (a list); find them by place through PractitionerRole."""
    page = _page(request)
    async with request.app.state.db.read() as session:
        doctors = await _doctors(session, request.query_params, role=False)
    return searchset(request, [mapping.practitioner(d) for d in doctors], **page)


@router.get("/Practitioner/{resource_id}")
async def read_practitioner(resource_id: str, request: Request):
    """One doctor as a Practitioner."""
    async with request.app.state.db.read() as session:
        doctor = await catalog_service.get_doctor_or_raise(session, _int_id(resource_id, "doctor"))
    return FhirJSON(mapping.practitioner(doctor))


@router.get("/PractitionerRole")
async def search_roles(request: Request):
    """Doctors in their departments by `_id`, `location`, `service` or `practitioner`."""
    page = _page(request)
    async with request.app.state.db.read() as session:
        doctors = await _doctors(session, request.query_params, role=True)
    return searchset(request, [mapping.practitioner_role(d) for d in doctors], **page)


@router.get("/PractitionerRole/{resource_id}")
async def read_role(resource_id: str, request: Request):
    """One doctor's role: title, level, department, hospital."""
    async with request.app.state.db.read() as session:
        doctor = await catalog_service.get_doctor_or_raise(session, _int_id(resource_id, "doctor"))
    return FhirJSON(mapping.practitioner_role(doctor))


# --- Schedule and Slot ------------------------------------------------------------------

async def released(request: Request, now: dt.datetime, *, first: dt.date, last: dt.date, **where) -> list:
    """Released schedules of active hospitals, as the availability routes count them: one read
    transaction, then (realtime hospitals) the HIS's counts with nothing open."""
    found, _total = await released_page(request, now, first=first, last=last, **where)
    return found


async def released_page(request: Request, now: dt.datetime, *, first: dt.date, last: dt.date,
                        count: int | None = None, offset: int = 0, **where) -> tuple[list, int | None]:
    """`released`, one page of it cut in SQL when `count` is given, and then the total of every
    match (None without a page). Inactive hospitals are left out in the same statements."""
    db = request.app.state.db
    where |= {"now": now, "first": first, "last": last, "exclude_hospitals": catalog_service.inactive_hospital_ids()}
    async with db.read() as session:
        found = await availability.released_schedules(session, limit=count, offset=offset, **where)
        total = None if count is None else await availability.count_released_schedules(session, **where)
    found = await availability.with_his_released(db, found, request.app.state.providers.get("his_availability"),
                                                 now=now)
    return found, total


def actor_filter(value: str | None) -> dict[str, int]:
    if value is None:
        return {}
    for kind, key in (("PractitionerRole", "doctor_id"), ("Practitioner", "doctor_id"),
                      ("HealthcareService", "department_id"), ("Location", "hospital_id")):
        found = mapping.ref_id(value, kind)
        if found is not None and value.rstrip("/").split("/")[-2:-1] == [kind]:
            return {key: found}
    raise InvalidRequest(field="actor")


@router.get("/Schedule")
async def search_schedules(request: Request):
    """Released schedules by `actor` (PractitionerRole, HealthcareService or Location), `date`
    (default: today and the next 7 days), `service-type` (registration level), `active`."""
    q = request.query_params
    page = _page(request)
    now = request.app.state.clock.now()
    first, last = params.date_range(q.getlist("date"), local_today(now, PLATFORM_ZONE), "date")
    where: dict[str, Any] = actor_filter(q.get("actor"))
    if q.get("_id") is not None:
        where["schedule_ids"] = params.ids(q.get("_id"))
        first, last = EVER
    if q.get("service-type"):
        where["registration_level"] = params.token(q.get("service-type"))
    if q.get("active") in ("true", "false"):  # inactive = 停诊
        where["status"] = "published" if q.get("active") == "true" else "suspended"
    found, total = await released_page(request, now, first=first, last=last, **where, **page)
    return searchset(request, [mapping.schedule(s) for s in found], total=total, **page)


@router.get("/Schedule/{resource_id}")
async def read_schedule(resource_id: str, request: Request):
    """One released schedule."""
    now = request.app.state.clock.now()
    found = await released(request, now, first=EVER[0], last=EVER[1], schedule_ids=[_int_id(resource_id, "schedule")])
    if not found:
        raise NotFound("schedule")
    return FhirJSON(mapping.schedule(found[0]))


def slots_of(found: list, base_url: str, phones: dict[int, str] | None = None) -> list[dict[str, Any]]:
    return [mapping.slot(s, item, base_url=base_url, booking_phone=(phones or {}).get(s.hospital_id))
            for s in found for item in s.view.slots]


@router.get("/Slot")
async def search_slots(request: Request):
    """Bands of released schedules by `schedule`, `start` (default: today and the next 7
    days), `status` (free / busy / busy-unavailable) or `service-type`. `free` never includes
    seats held by others: a held seat is not remaining."""
    q = request.query_params
    page = _page(request)
    now = request.app.state.clock.now()
    first, last = params.date_range(q.getlist("start"), local_today(now, PLATFORM_ZONE), "start")
    where: dict[str, Any] = {}
    schedule_id = params.reference(q.get("schedule"), "Schedule", "schedule")
    if schedule_id is not None:
        where["schedule_ids"] = [schedule_id]
        if not q.getlist("start"):
            first, last = EVER
    if q.get("service-type"):
        where["registration_level"] = params.token(q.get("service-type"))
    wanted = params.ids(q.get("_id"))
    if wanted is not None:
        first, last = EVER
    found = await released(request, now, first=first, last=last, **where)
    resources = slots_of(found, request.app.state.settings.base_url)
    if wanted is not None:
        resources = [r for r in resources if int(r["id"]) in wanted]
    if q.get("status"):
        resources = [r for r in resources if r["status"] in q.get("status").split(",")]
    return searchset(request, resources, **page)


@router.get("/Slot/{resource_id}")
async def read_slot(resource_id: str, request: Request):
    """One band of a released schedule, with its remaining seats and its page."""
    from guahao.booking import queries as booking_queries

    slot_id = _int_id(resource_id, "slot")
    now = request.app.state.clock.now()
    async with request.app.state.db.read() as session:
        ctx = await booking_queries.slot_context(session, slot_id)
    found = [] if ctx is None else await released(request, now, first=EVER[0], last=EVER[1],
                                                  schedule_ids=[ctx.schedule_id])
    resources = [r for r in slots_of(found, request.app.state.settings.base_url) if r["id"] == str(slot_id)]
    if not resources:
        raise NotFound("slot")
    return FhirJSON(resources[0])
