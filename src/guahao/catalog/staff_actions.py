"""Staff writes on the catalog with their audit rows: the one place both the JSON routes
(catalog/staff_router.py) and the back-office pages (web/staff/admin.py) call, so a change
made from a page is audited exactly as one made through the API.

Each function runs inside the caller's unit of work; the audit row commits with the change
(catalog data is public: the rows hold no personal values). Scoping (`hospital_id` of the
staff member, None for the operator) answers 404 for another hospital's objects.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import photos, service
from guahao.catalog.models import (  # the codes the back-office forms offer
    ENTRANCES,
    HIS_MODES,
    LEVELS,
    REGISTRATION_LEVELS,
    TITLES,
    Department,
    Doctor,
    FeeRule,
    Hospital,
)
from guahao.catalog.schemas import (
    DepartmentCreate,
    DepartmentUpdate,
    DoctorCreate,
    DoctorUpdate,
    FeeRuleIn,
    HospitalCreate,
    HospitalUpdate,
)
from guahao.core import audit
from guahao.core.errors import NotFound

__all__ = ["ENTRANCES", "HIS_MODES", "LEVELS", "REGISTRATION_LEVELS", "TITLES"]  # used by web.staff


def _own(scope: int | None, hospital_id: int, what: str) -> None:
    if scope is not None and scope != hospital_id:
        raise NotFound(what)


async def _audit(session: AsyncSession, *, now: dt.datetime, staff_id: int, action: str, object_type: str,
                 object_id: int, hospital_id: int, detail: dict) -> None:
    await audit.do_record(session, now=now, action=action, object_type=object_type, object_id=object_id,
                          hospital_id=hospital_id, staff_id=staff_id, detail=detail)


async def do_create_hospital(session: AsyncSession, data: HospitalCreate, *, staff_id: int,
                             now: dt.datetime) -> Hospital:
    hospital = await service.do_create_hospital(session, data, now)
    await _audit(session, now=now, staff_id=staff_id, action="hospital.create", object_type="hospital",
                 object_id=hospital.id, hospital_id=hospital.id,
                 detail={"name": hospital.name, "his_mode": hospital.his_mode})
    return hospital


async def do_update_hospital(session: AsyncSession, hospital_id: int, data: HospitalUpdate, *, staff_id: int,
                             now: dt.datetime, bookings=None, connections=None) -> Hospital:
    """The caller checked who may change which fields (HospitalUpdate.ADMIN_FIELDS)."""
    hospital = await service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    await service.do_update_hospital(session, hospital, data, now=now, bookings=bookings, connections=connections)
    await _audit(session, now=now, staff_id=staff_id, action="hospital.update", object_type="hospital",
                 object_id=hospital.id, hospital_id=hospital.id, detail=data.changes())
    return hospital


async def do_create_department(session: AsyncSession, hospital_id: int, data: DepartmentCreate, *,
                               staff_id: int, now: dt.datetime) -> Department:
    department = await service.do_create_department(session, hospital_id, data)
    await _audit(session, now=now, staff_id=staff_id, action="department.create", object_type="department",
                 object_id=department.id, hospital_id=hospital_id,
                 detail={"name": department.name, "parent_id": department.parent_id})
    return department


async def do_update_department(session: AsyncSession, department_id: int, data: DepartmentUpdate, *,
                               scope: int | None, staff_id: int, now: dt.datetime) -> Department:
    department = await service.get_department_or_raise(session, department_id, include_inactive=True)
    _own(scope, department.hospital_id, "department")
    await service.do_update_department(session, department, data)
    await _audit(session, now=now, staff_id=staff_id, action="department.update", object_type="department",
                 object_id=department.id, hospital_id=department.hospital_id, detail=data.changes())
    return department


async def do_create_doctor(session: AsyncSession, hospital_id: int, data: DoctorCreate, *, staff_id: int,
                           now: dt.datetime) -> Doctor:
    await service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    doctor = await service.do_create_doctor(session, hospital_id, data)
    await _audit(session, now=now, staff_id=staff_id, action="doctor.create", object_type="doctor",
                 object_id=doctor.id, hospital_id=hospital_id,
                 detail={"name": doctor.name, "department_id": doctor.department_id})
    return doctor


async def do_update_doctor(session: AsyncSession, doctor_id: int, data: DoctorUpdate, *, scope: int | None,
                           staff_id: int, now: dt.datetime) -> Doctor:
    doctor = await service.get_doctor_or_raise(session, doctor_id, include_inactive=True)
    _own(scope, doctor.hospital_id, "doctor")
    await service.do_update_doctor(session, doctor, data)
    await _audit(session, now=now, staff_id=staff_id, action="doctor.update", object_type="doctor",
                 object_id=doctor.id, hospital_id=doctor.hospital_id, detail=data.changes())
    return doctor


async def do_set_doctor_photo(session: AsyncSession, doctor_id: int, content: bytes, *, scope: int | None,
                              staff_id: int, now: dt.datetime) -> str:
    """Checks and re-encodes the upload (photos.prepare) and stores it in place of any earlier
    one; the etag."""
    doctor = await service.get_doctor_or_raise(session, doctor_id, include_inactive=True)
    _own(scope, doctor.hospital_id, "doctor")
    stored, media_type = photos.prepare(content)
    photo = await photos.do_store(session, doctor.id, stored, media_type, now=now)
    await _audit(session, now=now, staff_id=staff_id, action="doctor.photo_set", object_type="doctor",
                 object_id=doctor.id, hospital_id=doctor.hospital_id,
                 detail={"media_type": media_type, "bytes": len(stored), "sha256": photo.etag})
    return photo.etag


async def do_delete_doctor_photo(session: AsyncSession, doctor_id: int, *, scope: int | None, staff_id: int,
                                 now: dt.datetime) -> bool:
    doctor = await service.get_doctor_or_raise(session, doctor_id, include_inactive=True)
    _own(scope, doctor.hospital_id, "doctor")
    removed = await photos.do_remove(session, doctor.id)
    if removed:
        await _audit(session, now=now, staff_id=staff_id, action="doctor.photo_delete", object_type="doctor",
                     object_id=doctor.id, hospital_id=doctor.hospital_id, detail={})
    return removed


async def do_set_fees(session: AsyncSession, hospital_id: int, rows: Iterable[FeeRuleIn], *, staff_id: int,
                      now: dt.datetime) -> list[FeeRule]:
    rules = await service.do_set_fees(session, hospital_id, rows)
    await _audit(session, now=now, staff_id=staff_id, action="fees.set", object_type="hospital",
                 object_id=hospital_id, hospital_id=hospital_id,
                 detail={"rules": [[r.registration_level, r.title, r.registration_fee, r.consultation_fee]
                                   for r in rules]})
    return rules


async def list_hospital_doctors(session: AsyncSession, hospital_id: int) -> list[Doctor]:
    """Every doctor of the hospital, inactive ones too (the admin's list), by department."""
    from sqlalchemy import select

    stmt = select(Doctor).where(Doctor.hospital_id == hospital_id).order_by(Doctor.department_id, Doctor.id)
    return list((await session.execute(stmt)).scalars())


async def list_all_hospitals(session: AsyncSession) -> list[Hospital]:
    """Every hospital, inactive ones too (the operator's list), newest first."""
    from sqlalchemy import select

    return list((await session.execute(select(Hospital).order_by(Hospital.id.desc()))).scalars())
