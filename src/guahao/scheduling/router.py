"""HTTP routes of the scheduling feature: staff templates and schedules, public availability.

Staff see only their hospital: a hospital route of another hospital is 404 hospital, an
object of another hospital is 404 template / schedule (the same answer as a missing id).
Writes need hospital_admin or scheduler (the operator may do anything); front_desk reads.
"""
from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from guahao.catalog import rules as hospital_rules
from guahao.core.deps import ClockDep, CurrentStaff, Db, StaffPrincipal
from guahao.core.errors import InvalidRequest
from guahao.core.localtime import localize
from guahao.scheduling import availability, service, templates
from guahao.scheduling.models import Schedule
from guahao.scheduling.schemas import (
    Availability,
    GenerateRequest,
    GenerateResult,
    Level,
    ScheduleDetail,
    ScheduleRead,
    ScheduleUpdate,
    SlotRead,
    Status,
    TemplateCreate,
    TemplateRead,
    TemplateUpdate,
)

router = APIRouter(tags=["scheduling"])
WRITERS = ("hospital_admin", "scheduler")
READERS = ("hospital_admin", "scheduler", "front_desk")
MAX_LIST_DAYS = 62


def _scope(staff: StaffPrincipal) -> int | None:
    """The hospital a staff member is confined to; None for the platform operator."""
    return None if staff.is_operator else staff.hospital_id


async def _hospital_in_scope(db: Db, staff: StaffPrincipal, hospital_id: int) -> None:
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        await hospital_rules.get_rules(session, hospital_id)  # 404 hospital when it does not exist


# --- templates --------------------------------------------------------------------------

@router.get("/api/v1/staff/hospitals/{hospital_id}/schedule-templates", response_model=list[TemplateRead])
async def list_templates(hospital_id: int, staff: CurrentStaff, db: Db, department_id: int | None = None,
                         doctor_id: int | None = None):
    """The hospital's weekly schedule templates (scheduler, admin)."""
    staff.require(*READERS)
    await _hospital_in_scope(db, staff, hospital_id)
    async with db.read() as session:
        return await templates.list_templates(session, hospital_id, department_id=department_id,
                                              doctor_id=doctor_id)


@router.post("/api/v1/staff/hospitals/{hospital_id}/schedule-templates", response_model=TemplateRead,
             status_code=201)
async def create_template(hospital_id: int, body: TemplateCreate, staff: CurrentStaff, db: Db, clock: ClockDep):
    """Add a weekly template row: doctor or general clinic, weekday, period, capacities per pool."""
    staff.require(*WRITERS)
    staff.ensure_hospital(hospital_id)
    async with db.begin() as session:
        await hospital_rules.get_rules(session, hospital_id)
        template = await templates.do_create_template(session, hospital_id, body, now=clock.now(),
                                                      actor_id=staff.staff_id)
    return template


@router.get("/api/v1/staff/schedule-templates/{template_id}", response_model=TemplateRead)
async def get_template(template_id: int, staff: CurrentStaff, db: Db):
    """One weekly template row."""
    staff.require(*READERS)
    async with db.read() as session:
        return await templates.get_template_or_raise(session, template_id, hospital_id=_scope(staff))


@router.patch("/api/v1/staff/schedule-templates/{template_id}", response_model=TemplateRead)
async def update_template(template_id: int, body: TemplateUpdate, staff: CurrentStaff, db: Db, clock: ClockDep):
    """Change a template row; schedules already generated keep their own values."""
    staff.require(*WRITERS)
    async with db.begin() as session:
        template = await templates.do_update_template(session, template_id, body, now=clock.now(),
                                                      hospital_id=_scope(staff), actor_id=staff.staff_id)
    return template


@router.delete("/api/v1/staff/schedule-templates/{template_id}", status_code=204)
async def delete_template(template_id: int, staff: CurrentStaff, db: Db, clock: ClockDep):
    """Remove a template row; schedules already generated stay."""
    staff.require(*WRITERS)
    async with db.begin() as session:
        await templates.do_delete_template(session, template_id, now=clock.now(), hospital_id=_scope(staff),
                                           actor_id=staff.staff_id)
    return Response(status_code=204)


# --- schedules --------------------------------------------------------------------------

@router.post("/api/v1/staff/hospitals/{hospital_id}/schedules/generate", response_model=GenerateResult)
async def generate_schedules(hospital_id: int, body: GenerateRequest, staff: CurrentStaff, db: Db,
                             clock: ClockDep):
    """Generate dated schedules from the templates for a date range (drafts, or published at once)."""
    staff.require(*WRITERS)
    staff.ensure_hospital(hospital_id)
    async with db.begin() as session:
        outcome = await service.do_generate(session, hospital_id, body.from_date, body.to_date, body.publish,
                                            clock.now(), actor_id=staff.staff_id)
    return GenerateResult(created=outcome.created, skipped=outcome.skipped, schedule_ids=outcome.schedule_ids)


@router.get("/api/v1/staff/hospitals/{hospital_id}/schedules", response_model=list[ScheduleRead])
async def list_schedules(hospital_id: int, staff: CurrentStaff, db: Db,
                         from_date: dt.date = Query(alias="from"), to_date: dt.date = Query(alias="to"),
                         department_id: int | None = None, doctor_id: int | None = None,
                         status: Status | None = None):
    """The hospital's dated schedules in a date range with release instants and seats in use."""
    staff.require(*READERS)
    staff.ensure_hospital(hospital_id)
    if to_date < from_date or (to_date - from_date).days >= MAX_LIST_DAYS:
        raise InvalidRequest(max_days=MAX_LIST_DAYS)
    async with db.read() as session:
        rules = await hospital_rules.get_rules(session, hospital_id)
        schedules = await service.list_schedules(session, hospital_id, from_date, to_date,
                                                 department_id=department_id, doctor_id=doctor_id, status=status)
        totals = await service.pool_totals(session, [s.id for s in schedules])
    return [_schedule_read(s, rules, totals[s.id]) for s in schedules]


@router.get("/api/v1/staff/schedules/{schedule_id}", response_model=ScheduleDetail)
async def get_schedule(schedule_id: int, staff: CurrentStaff, db: Db):
    """One schedule with its slots per pool and what is sold."""
    staff.require(*READERS)
    async with db.read() as session:
        return await _detail(session, schedule_id, _scope(staff))


@router.patch("/api/v1/staff/schedules/{schedule_id}", response_model=ScheduleDetail)
async def update_schedule(schedule_id: int, body: ScheduleUpdate, request: Request, staff: CurrentStaff, db: Db,
                          clock: ClockDep):
    """Change a schedule's times or capacities; a capacity never goes below what is sold."""
    staff.require(*WRITERS)
    async with db.begin() as session:
        await service.do_update_schedule(session, schedule_id, now=clock.now(), hospital_id=_scope(staff),
                                         platform_capacity=body.platform_capacity,
                                         onsite_capacity=body.onsite_capacity, bands=body.bands,
                                         actor_id=staff.staff_id, bookings=request.app.state.providers["bookings"])
    async with db.read() as session:
        return await _detail(session, schedule_id, _scope(staff))


@router.post("/api/v1/staff/schedules/{schedule_id}/publish", response_model=ScheduleDetail)
async def publish_schedule(schedule_id: int, staff: CurrentStaff, db: Db, clock: ClockDep):
    """Publish a draft schedule: its numbers are released at its release instant."""
    staff.require(*WRITERS)
    async with db.begin() as session:
        await service.do_publish(session, schedule_id, now=clock.now(), hospital_id=_scope(staff),
                                 actor_id=staff.staff_id)
    async with db.read() as session:
        return await _detail(session, schedule_id, _scope(staff))


async def _detail(session, schedule_id: int, hospital_id: int | None) -> ScheduleDetail:
    schedule = await service.get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id)
    rules = await hospital_rules.get_rules(session, schedule.hospital_id)
    slots = await service.list_slots(session, schedule.id)
    totals = {"platform": 0, "onsite": 0}
    for slot in slots:
        totals[slot.pool] += slot.capacity
    read = _schedule_read(schedule, rules, totals)
    slot_reads = [SlotRead(id=s.id, pool=s.pool, starts_at=s.starts_at, ends_at=s.ends_at, capacity=s.capacity,
                           first_visit_no=s.first_visit_no) for s in slots]
    return localize(ScheduleDetail(**dict(read), slots=slot_reads), rules.tz)


def _schedule_read(schedule: Schedule, rules, totals: dict[str, int]) -> ScheduleRead:
    return localize(ScheduleRead(
        id=schedule.id, hospital_id=schedule.hospital_id, department_id=schedule.department_id,
        doctor_id=schedule.doctor_id, template_id=schedule.template_id, date=schedule.date,
        period=schedule.period, starts_at=schedule.starts_at, ends_at=schedule.ends_at,
        registration_level=schedule.registration_level, registration_fee=schedule.registration_fee,
        consultation_fee=schedule.consultation_fee,
        total_fee=schedule.registration_fee + schedule.consultation_fee, status=schedule.status,
        suspended_reason=schedule.suspended_reason, release_at=schedule.release_at,
        closes_at=service.closes_at(schedule, rules),
        platform_capacity=totals["platform"], onsite_capacity=totals["onsite"]), rules.tz)


# --- public availability ----------------------------------------------------------------

def his_port(request: Request) -> availability.HisAvailability | None:
    """The HIS port of realtime hospitals (wired in `providers.py`); pages pass it themselves."""
    return request.app.state.providers.get("his_availability")


async def his_availability(request: Request) -> availability.HisAvailability | None:
    # async on purpose: FastAPI runs a plain `def` dependency in its thread pool, and that
    # hand-off was a third of a worker's CPU in the browse storm (py-spy, docs/BENCHMARKS.md)
    return his_port(request)


HisAvailabilityDep = Annotated[availability.HisAvailability | None, Depends(his_availability)]

async def department_answer(department_id: int, db, clock, *, from_date: dt.date | None, days: int | None,
                            registration_level: str | None = None,
                            his: availability.HisAvailability | None = None) -> availability.Availability:
    """The department's availability answer (the API's and the department page's)."""
    now = clock.now()
    result = await availability.department_shared(db, department_id, now=now, from_date=from_date, days=days,
                                                  registration_level=registration_level)
    return await availability.with_his(db, result, his, now=now)  # realtime: the HIS's counts


async def doctor_answer(doctor_id: int, db, clock, *, from_date: dt.date | None, days: int | None,
                        his: availability.HisAvailability | None = None) -> availability.Availability:
    """The doctor's availability answer (the API's and the doctor page's)."""
    now = clock.now()
    result = await availability.doctor_shared(db, doctor_id, now=now, from_date=from_date, days=days)
    return await availability.with_his(db, result, his, now=now)


# The two routes send a cached answer's JSON as made the first time (availability.rendered):
# FastAPI re-validating and serialising the nested model per poll was most of a poll's CPU.

@router.get("/api/v1/departments/{department_id}/availability", response_model=Availability)
async def department_availability(department_id: int, db: Db, clock: ClockDep,
                                  from_date: dt.date | None = Query(None, alias="from"),
                                  days: int | None = Query(None, ge=1, le=availability.MAX_DAYS),
                                  registration_level: Level | None = None, his: HisAvailabilityDep = None):
    """`registration_level` (general | expert | special): only those clinics, for hospitals whose
    entrance is 普通号 / 专家号 first."""
    result = await department_answer(department_id, db, clock, from_date=from_date, days=days,
                                     registration_level=registration_level, his=his)
    return Response(availability.rendered(result), media_type="application/json")


@router.get("/api/v1/doctors/{doctor_id}/availability", response_model=Availability)
async def doctor_availability(doctor_id: int, db: Db, clock: ClockDep,
                              from_date: dt.date | None = Query(None, alias="from"),
                              days: int | None = Query(None, ge=1, le=availability.MAX_DAYS),
                              his: HisAvailabilityDep = None):
    """A doctor's clinics in the booking window: per day and period, available, full, not yet released
    (with the instant) or suspended."""
    result = await doctor_answer(doctor_id, db, clock, from_date=from_date, days=days, his=his)
    return Response(availability.rendered(result), media_type="application/json")
