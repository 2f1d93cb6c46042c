"""Catalog management for staff: the operator onboards hospitals; a hospital admin keeps the
departments, doctors and fees of their own hospital (the operator may act on any).

Every write is one unit of work; the response is built after it committed (I7). Staff of
another hospital get 404 for its objects, the same answer as for a missing id (I8).
"""
from __future__ import annotations

from fastapi import APIRouter, File, Request, Response, UploadFile, status
from pydantic import BaseModel

from guahao.catalog import photos, service, staff_actions, views
from guahao.catalog.models import Department, Doctor, Hospital
from guahao.catalog.schemas import (
    DepartmentCreate,
    DepartmentRead,
    DepartmentUpdate,
    DoctorCreate,
    DoctorDetail,
    DoctorUpdate,
    FeeRuleIn,
    FeeRuleRead,
    HospitalCreate,
    HospitalStaffRead,
    HospitalUpdate,
)
from guahao.core.deps import ClockDep, CurrentStaff, Db, Locale, StaffPrincipal
from guahao.core.errors import Forbidden

router = APIRouter(prefix="/api/v1/staff", tags=["catalog: staff"])

OPERATOR = "platform_operator"
ADMIN = "hospital_admin"


def _scope(staff: StaffPrincipal) -> int | None:
    """The hospital a staff member is confined to; None for the platform operator."""
    return None if staff.is_operator else staff.hospital_id


# --- hospitals ------------------------------------------------------------------------------

@router.post("/hospitals", response_model=HospitalStaffRead, status_code=status.HTTP_201_CREATED)
async def create_hospital(data: HospitalCreate, staff: CurrentStaff, db: Db, clock: ClockDep,
                          locale: Locale) -> HospitalStaffRead:
    """Onboard a hospital (platform operator): profile, level, location, time zone, entrance; audited."""
    staff.require(OPERATOR)
    async with db.begin() as session:
        hospital = await staff_actions.do_create_hospital(session, data, staff_id=staff.staff_id, now=clock.now())
    return views.hospital_staff_read(hospital, locale)


@router.get("/hospitals/{hospital_id}", response_model=HospitalStaffRead)
async def get_hospital(hospital_id: int, staff: CurrentStaff, db: Db, locale: Locale) -> HospitalStaffRead:
    """A hospital's profile and settings as its staff and the operator see them."""
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        hospital = await service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    return views.hospital_staff_read(hospital, locale)


@router.patch("/hospitals/{hospital_id}", response_model=HospitalStaffRead)
async def update_hospital(request: Request, hospital_id: int, data: HospitalUpdate, staff: CurrentStaff, db: Db,
                          clock: ClockDep, locale: Locale) -> HospitalStaffRead:
    """The operator edits anything (HIS mode, activation, grading); a hospital admin only the
    descriptive fields of their own hospital. The HIS mode switches only without live bookings
    (`his_mode_locked`) and, to synced or realtime, with a HIS connection (`his_connection_missing`)."""
    staff.require(ADMIN)
    staff.ensure_hospital(hospital_id)
    if not staff.is_operator and not data.model_fields_set <= HospitalUpdate.ADMIN_FIELDS:
        raise Forbidden()
    async with db.begin() as session:
        providers = request.app.state.providers
        hospital = await staff_actions.do_update_hospital(session, hospital_id, data, staff_id=staff.staff_id,
                                                          now=clock.now(), bookings=providers["bookings"],
                                                          connections=providers.get("his_connections"))
    return views.hospital_staff_read(hospital, locale)


# --- departments ----------------------------------------------------------------------------

async def _department_read(session, department: Department, locale: str) -> DepartmentRead:
    hospital = await session.get(Hospital, department.hospital_id)
    siblings = await service.list_departments(session, department.hospital_id)
    parent = next((d for d in siblings if d.id == department.parent_id), None)
    children = [d for d in siblings if d.parent_id == department.id]
    return views.department_read(department, hospital, parent, children, locale)


@router.post("/hospitals/{hospital_id}/departments", response_model=DepartmentRead,
             status_code=status.HTTP_201_CREATED)
async def create_department(hospital_id: int, data: DepartmentCreate, staff: CurrentStaff, db: Db,
                            clock: ClockDep, locale: Locale) -> DepartmentRead:
    """Add a department (hospital admin): name, parent, location, age and sex limits; audited."""
    staff.require(ADMIN)
    staff.ensure_hospital(hospital_id)
    async with db.begin() as session:
        department = await staff_actions.do_create_department(session, hospital_id, data, staff_id=staff.staff_id,
                                                              now=clock.now())
        body = await _department_read(session, department, locale)
    return body


@router.patch("/departments/{department_id}", response_model=DepartmentRead)
async def update_department(department_id: int, data: DepartmentUpdate, staff: CurrentStaff, db: Db,
                            clock: ClockDep, locale: Locale) -> DepartmentRead:
    """Change a department; audited."""
    staff.require(ADMIN)
    async with db.begin() as session:
        department = await staff_actions.do_update_department(session, department_id, data, scope=_scope(staff),
                                                              staff_id=staff.staff_id, now=clock.now())
        body = await _department_read(session, department, locale)
    return body


# --- doctors --------------------------------------------------------------------------------

async def _doctor_detail(session, doctor: Doctor, locale: str) -> DoctorDetail:
    hospital = await session.get(Hospital, doctor.hospital_id)
    department = await session.get(Department, doctor.department_id)
    fees = await service.fee_table(session, doctor.hospital_id)
    return views.doctor_detail(doctor, department.name, hospital.name,
                               fees.get((doctor.registration_level, doctor.title)), locale)


@router.post("/hospitals/{hospital_id}/doctors", response_model=DoctorDetail, status_code=status.HTTP_201_CREATED)
async def create_doctor(hospital_id: int, data: DoctorCreate, staff: CurrentStaff, db: Db, clock: ClockDep,
                        locale: Locale) -> DoctorDetail:
    """Add a doctor (hospital admin): department, title, registration level, specialty, introduction;
    audited."""
    staff.require(ADMIN)
    staff.ensure_hospital(hospital_id)
    async with db.begin() as session:
        doctor = await staff_actions.do_create_doctor(session, hospital_id, data, staff_id=staff.staff_id,
                                                      now=clock.now())
        body = await _doctor_detail(session, doctor, locale)
    return body


@router.patch("/doctors/{doctor_id}", response_model=DoctorDetail)
async def update_doctor(doctor_id: int, data: DoctorUpdate, staff: CurrentStaff, db: Db, clock: ClockDep,
                        locale: Locale) -> DoctorDetail:
    """Change a doctor's profile; audited."""
    staff.require(ADMIN)
    async with db.begin() as session:
        doctor = await staff_actions.do_update_doctor(session, doctor_id, data, scope=_scope(staff),
                                                      staff_id=staff.staff_id, now=clock.now())
        body = await _doctor_detail(session, doctor, locale)
    return body


class PhotoStored(BaseModel):
    doctor_id: int
    url: str
    etag: str


@router.put("/doctors/{doctor_id}/photo", response_model=PhotoStored)
async def put_doctor_photo(doctor_id: int, staff: CurrentStaff, db: Db, clock: ClockDep,
                           photo: UploadFile = File(...)) -> PhotoStored:
    """Sets or replaces the doctor's photo (multipart field `photo`: JPEG, PNG or WebP, at most
    2 MB, checked by its content)."""
    staff.require(ADMIN)
    content = await photos.read_limited(photo)  # read before the transaction: no I/O inside it
    async with db.begin() as session:
        etag = await staff_actions.do_set_doctor_photo(session, doctor_id, content, scope=_scope(staff),
                                                       staff_id=staff.staff_id, now=clock.now())
    return PhotoStored(doctor_id=doctor_id, url=f"/media/doctors/{doctor_id}", etag=etag)


@router.delete("/doctors/{doctor_id}/photo", status_code=status.HTTP_204_NO_CONTENT)
async def delete_doctor_photo(doctor_id: int, staff: CurrentStaff, db: Db, clock: ClockDep) -> Response:
    """Removes the doctor's photo; the patient pages fall back to the placeholder."""
    staff.require(ADMIN)
    async with db.begin() as session:
        await staff_actions.do_delete_doctor_photo(session, doctor_id, scope=_scope(staff),
                                                   staff_id=staff.staff_id, now=clock.now())
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- fees -----------------------------------------------------------------------------------

@router.get("/hospitals/{hospital_id}/fees", response_model=list[FeeRuleRead])
async def get_fees(hospital_id: int, staff: CurrentStaff, db: Db, locale: Locale) -> list[FeeRuleRead]:
    """The hospital's fee table: 挂号费 and 诊查费 by registration level and doctor title."""
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        await service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        rules = service.sort_fee_rules((await service.fee_table(session, hospital_id)).values())
    return [views.fee_rule_read(r, locale) for r in rules]


@router.put("/hospitals/{hospital_id}/fees", response_model=list[FeeRuleRead])
async def set_fees(hospital_id: int, rows: list[FeeRuleIn], staff: CurrentStaff, db: Db, clock: ClockDep,
                   locale: Locale) -> list[FeeRuleRead]:
    """Replaces the hospital's whole fee table (integer fen)."""
    staff.require(ADMIN)
    staff.ensure_hospital(hospital_id)
    async with db.begin() as session:
        rules = await staff_actions.do_set_fees(session, hospital_id, rows, staff_id=staff.staff_id, now=clock.now())
    return [views.fee_rule_read(r, locale) for r in rules]
