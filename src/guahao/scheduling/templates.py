"""Weekly schedule templates: a doctor (or a department's general clinic) x weekday x period."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core.errors import InvalidRequest, NotFound
from guahao.scheduling import domain
from guahao.scheduling.errors import DoctorNotInDepartment, TemplateConflict
from guahao.scheduling.models import ScheduleTemplate
from guahao.scheduling.schemas import TemplateCreate, TemplateUpdate
from guahao.scheduling.service import record_audit


async def get_template_or_raise(session: AsyncSession, template_id: int, *,
                                hospital_id: int | None = None) -> ScheduleTemplate:
    template = await session.get(ScheduleTemplate, template_id)
    if template is None or (hospital_id is not None and template.hospital_id != hospital_id):
        raise NotFound("template")
    return template


async def list_templates(session: AsyncSession, hospital_id: int, *, department_id: int | None = None,
                         doctor_id: int | None = None) -> list[ScheduleTemplate]:
    stmt = select(ScheduleTemplate).where(ScheduleTemplate.hospital_id == hospital_id)
    if department_id is not None:
        stmt = stmt.where(ScheduleTemplate.department_id == department_id)
    if doctor_id is not None:
        stmt = stmt.where(ScheduleTemplate.doctor_id == doctor_id)
    stmt = stmt.order_by(ScheduleTemplate.weekday, ScheduleTemplate.department_id, ScheduleTemplate.id)
    return list((await session.scalars(stmt)).all())


def _overlaps(a: str, b: str, windows: domain.Windows) -> bool:
    (a0, a1), (b0, b1) = windows[a], windows[b]
    return a0 < b1 and b0 < a1


async def _check_conflict(session: AsyncSession, template: ScheduleTemplate) -> None:
    """One active template per doctor (or general clinic), weekday and overlapping period.

    A Python check, not an index: a duplicate that slipped through a race would only be
    skipped at generation (the schedules' unique indexes hold), never double-booked.
    """
    if not template.active:
        return
    stmt = select(ScheduleTemplate).where(
        ScheduleTemplate.hospital_id == template.hospital_id, ScheduleTemplate.weekday == template.weekday,
        ScheduleTemplate.active.is_(True))
    if template.doctor_id is not None:
        stmt = stmt.where(ScheduleTemplate.doctor_id == template.doctor_id)
    else:
        stmt = stmt.where(ScheduleTemplate.doctor_id.is_(None),
                          ScheduleTemplate.department_id == template.department_id)
    if template.id is not None:
        stmt = stmt.where(ScheduleTemplate.id != template.id)
    windows = (await hospital_rules.get_rules(session, template.hospital_id)).period_windows
    for other in (await session.scalars(stmt)).all():
        if _overlaps(other.period, template.period, windows):
            raise TemplateConflict(template_id=other.id)


async def _resolve_owner(session: AsyncSession, hospital_id: int, department_id: int | None,
                         doctor_id: int | None) -> tuple[int, Any]:
    """The template's department and doctor (an inactive doctor may still get templates)."""
    doctor = None
    if doctor_id is not None:
        doctor = await catalog_service.get_doctor_or_raise(session, doctor_id, hospital_id=hospital_id,
                                                           include_inactive=True)
        if department_id is not None and department_id != doctor.department_id:
            raise DoctorNotInDepartment()
        department_id = doctor.department_id
    if department_id is None:
        raise InvalidRequest(field="department_id")
    await catalog_service.get_department_or_raise(session, department_id, hospital_id=hospital_id,
                                                  include_inactive=True)
    return department_id, doctor


async def _normalised_bands(session: AsyncSession, hospital_id: int, period: str, bands: list) -> list[list[str]]:
    """Explicit bands, checked against the hospital's clinic hours of the period."""
    if not bands:
        return []
    windows = (await hospital_rules.get_rules(session, hospital_id)).period_windows
    return [band.as_strings() for band in domain.parse_bands(period, bands, windows)]


async def do_create_template(session: AsyncSession, hospital_id: int, data: TemplateCreate, *,
                             now: dt.datetime, actor_id: int | None = None) -> ScheduleTemplate:
    department_id, doctor = await _resolve_owner(session, hospital_id, data.department_id, data.doctor_id)
    level = data.registration_level or (doctor.registration_level if doctor is not None else "general")
    template = ScheduleTemplate(
        hospital_id=hospital_id, department_id=department_id, doctor_id=data.doctor_id, weekday=data.weekday,
        period=data.period, registration_level=level, platform_capacity=data.platform_capacity,
        onsite_capacity=data.onsite_capacity, bands=await _normalised_bands(session, hospital_id, data.period, data.bands),
        active=data.active)
    await _check_conflict(session, template)
    session.add(template)
    await session.flush()
    await record_audit(session, now, actor_id, hospital_id, "template.create", "schedule_template", template.id,
                       {"weekday": template.weekday, "period": template.period})
    return template


async def do_update_template(session: AsyncSession, template_id: int, data: TemplateUpdate, *,
                             now: dt.datetime, hospital_id: int | None = None,
                             actor_id: int | None = None) -> ScheduleTemplate:
    """Changes apply to schedules generated from now on; existing schedules keep theirs."""
    template = await get_template_or_raise(session, template_id, hospital_id=hospital_id)
    changes = data.model_dump(exclude_unset=True, exclude_none=True)
    for field, value in changes.items():
        setattr(template, field, value)
    # bands are checked against the (possibly new) period even when only the period changed
    template.bands = await _normalised_bands(session, template.hospital_id, template.period,
                                             list(template.bands or []))
    await _check_conflict(session, template)
    await session.flush()
    await record_audit(session, now, actor_id, template.hospital_id, "template.update", "schedule_template",
                       template.id, {"fields": sorted(changes)})
    return template


async def do_delete_template(session: AsyncSession, template_id: int, *, now: dt.datetime,
                             hospital_id: int | None = None, actor_id: int | None = None) -> None:
    """Schedules already generated from it stay (their template_id becomes null)."""
    template = await get_template_or_raise(session, template_id, hospital_id=hospital_id)
    await record_audit(session, now, actor_id, template.hospital_id, "template.delete", "schedule_template",
                       template.id, {})
    await session.delete(template)
    await session.flush()
