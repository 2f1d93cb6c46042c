"""Catalog service: lookups other features call, and the staff's `do_*` writes.

Functions take the caller's AsyncSession and never commit: the router (or the calling
feature's action) owns the transaction. Writes that check-then-insert under a uniqueness rule
the database cannot express (top-level department names: NULL parents are distinct in a
UNIQUE index) first lock the hospital row, so two admins cannot race past the check; on
SQLite the writer's BEGIN IMMEDIATE already serialises them.
"""
from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import his_mode
from guahao.catalog.models import REGISTRATION_LEVELS, TITLES, Department, Doctor, FeeRule, Hospital, HospitalRules
from guahao.catalog.schemas import (
    DepartmentCreate,
    DepartmentUpdate,
    DoctorCreate,
    DoctorUpdate,
    FeeRuleIn,
    HospitalCreate,
    HospitalUpdate,
)
from guahao.catalog.search import apply_search_keys, keyword_condition, normalize_query
from guahao.core import localtime
from guahao.core.errors import GuahaoError, InvalidRequest, NotFound

EARTH_RADIUS_KM = 6371.0088

# Default price list of a new hospital (fen), edited by its admin afterwards: registration
# fee 1 yuan; the consultation fee grows with the level and the doctor's title.
_DEFAULT_CONSULTATION = {
    "general": {"none": 1000, "resident": 1000, "attending": 1500, "associate_chief": 1500, "chief": 1500},
    "expert": {"none": 3000, "resident": 3000, "attending": 3000, "associate_chief": 4000, "chief": 6000},
    "special": {"none": 30000, "resident": 30000, "attending": 30000, "associate_chief": 30000, "chief": 50000},
}
DEFAULT_FEES = [(level, title, 100, fee) for level, row in _DEFAULT_CONSULTATION.items() for title, fee in row.items()]


class FeeNotConfigured(GuahaoError):
    code, status = "fee_not_configured", 409
    zh = "该医院尚未设置此号别的挂号费和诊查费,暂不能预约。"
    en = ("The hospital has not set the registration fee and consultation fee of this registration level yet, "
          "so it cannot be booked.")


class DepartmentDepth(GuahaoError):
    code, status = "department_depth", 422
    zh = "科室最多两级:上级科室必须是一级科室,且有下级科室的科室不能再挂到其他科室下。"
    en = "Departments have at most two levels: the parent must be a top-level department without a parent."


class DepartmentNameTaken(GuahaoError):
    code, status = "department_name_taken", 409
    zh = "同一级下已有同名科室。"
    en = "A department with this name already exists at this level."


class DuplicateFeeRule(GuahaoError):
    code, status = "duplicate_fee_rule", 422
    zh = "费用表中同一号别和职称出现了多次。"
    en = "The fee table lists the same registration level and title more than once."


def hospital_zone(hospital: Hospital) -> ZoneInfo:
    return ZoneInfo(hospital.timezone)


async def zone_of(session: AsyncSession, hospital_id: int | None) -> ZoneInfo:
    """The zone a hospital's times are shown in; the platform default for no hospital."""
    name = None
    if hospital_id is not None:
        name = await session.scalar(select(Hospital.timezone).where(Hospital.id == hospital_id))
    return localtime.zone(name)


# --- lookups --------------------------------------------------------------------------------

async def get_hospital_or_raise(session: AsyncSession, hospital_id: int, *, include_inactive: bool = False) -> Hospital:
    hospital = await session.get(Hospital, hospital_id)
    if hospital is None or not (hospital.active or include_inactive):
        raise NotFound("hospital")
    return hospital


async def get_department_or_raise(session: AsyncSession, department_id: int, *, hospital_id: int | None = None,
                                  include_inactive: bool = False) -> Department:
    """A department; of an active hospital unless include_inactive; of `hospital_id` if given."""
    stmt = select(Department).join(Hospital, Department.hospital_id == Hospital.id).where(Department.id == department_id)
    if not include_inactive:
        stmt = stmt.where(Hospital.active.is_(True))
    department = (await session.execute(stmt)).scalar_one_or_none()
    if department is None or (hospital_id is not None and department.hospital_id != hospital_id):
        raise NotFound("department")
    return department


async def get_doctor_or_raise(session: AsyncSession, doctor_id: int, *, hospital_id: int | None = None,
                              include_inactive: bool = False) -> Doctor:
    """An active doctor of an active hospital (unless include_inactive); of `hospital_id` if given."""
    stmt = select(Doctor).join(Hospital, Doctor.hospital_id == Hospital.id).where(Doctor.id == doctor_id)
    if not include_inactive:
        stmt = stmt.where(Hospital.active.is_(True), Doctor.active.is_(True))
    doctor = (await session.execute(stmt)).scalar_one_or_none()
    if doctor is None or (hospital_id is not None and doctor.hospital_id != hospital_id):
        raise NotFound("doctor")
    return doctor


async def doctors_by_id(session: AsyncSession, doctor_ids: Iterable[int]) -> dict[int, Doctor]:
    """Doctors by id, active or not (callers decide what an inactive doctor means to them)."""
    ids = set(doctor_ids)
    if not ids:
        return {}
    return {d.id: d for d in (await session.scalars(select(Doctor).where(Doctor.id.in_(ids)))).all()}


def sub_department_ids(department_id: int):
    """The ids of a department's sub-departments, as a subquery for the caller's `IN (...)`:
    a feature filtering its own rows by a department tree keeps it to one statement."""
    return select(Department.id).where(Department.parent_id == department_id)


def inactive_hospital_ids():
    """The ids of inactive hospitals, as a subquery for the caller's `NOT IN (...)`: public
    lists of another feature's rows leave them out in the same statement (and page right)."""
    return select(Hospital.id).where(Hospital.active.is_(False))


async def his_mode_of(session: AsyncSession, hospital_id: int) -> str | None:
    return await session.scalar(select(Hospital.his_mode).where(Hospital.id == hospital_id))


async def hospitals_in_mode(session: AsyncSession, his_mode: str) -> list[int]:
    """Ids of the active hospitals running `his_mode` (the HIS sync and drift jobs scan them)."""
    return list(await session.scalars(select(Hospital.id).where(Hospital.his_mode == his_mode,
                                                                Hospital.active.is_(True)).order_by(Hospital.id)))


async def departments_by_his_code(session: AsyncSession, hospital_id: int) -> dict[str, Department]:
    """A hospital's departments that carry a HIS code, by that code."""
    rows = await session.scalars(select(Department).where(Department.hospital_id == hospital_id,
                                                          Department.his_code.is_not(None)))
    return {d.his_code: d for d in rows if d.his_code}


async def doctors_by_his_code(session: AsyncSession, hospital_id: int) -> dict[str, Doctor]:
    """A hospital's doctors that carry a HIS code, by that code (active or not)."""
    rows = await session.scalars(select(Doctor).where(Doctor.hospital_id == hospital_id,
                                                      Doctor.his_code.is_not(None)))
    return {d.his_code: d for d in rows if d.his_code}


async def count_hospitals(session: AsyncSession) -> int:
    """Every hospital, active or not (`list_hospitals` lists active ones only)."""
    return await session.scalar(select(func.count()).select_from(Hospital)) or 0


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on a spherical Earth (error < 0.5 %, plenty for "nearby")."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


async def list_hospitals(session: AsyncSession, *, city: str | None = None, district: str | None = None,
                         level: str | None = None, keyword: str | None = None,
                         near: tuple[float, float] | None = None, radius_km: float | None = None,
                         limit: int = 20, offset: int = 0) -> tuple[list[tuple[Hospital, float | None]], int]:
    """One page of active hospitals and the total. With `near`, ordered by distance (computed
    here over the filtered set, pre-filtered by a bounding box when a radius is given);
    otherwise by pinyin of the name, then id."""
    conds = [Hospital.active.is_(True)]
    for column, value in ((Hospital.city, city), (Hospital.district, district), (Hospital.level, level)):
        if value:
            conds.append(column == value)
    if keyword and keyword.strip():
        conds.append(keyword_condition(Hospital, *normalize_query(keyword)))
    if near is None:
        total = (await session.execute(select(func.count()).select_from(Hospital).where(*conds))).scalar_one()
        stmt = select(Hospital).where(*conds).order_by(Hospital.name_pinyin, Hospital.id).limit(limit).offset(offset)
        return [(h, None) for h in (await session.execute(stmt)).scalars()], total

    lat, lon = near
    if radius_km is not None:
        conds += _bounding_box(lat, lon, radius_km)
    rows = []
    for h in (await session.execute(select(Hospital).where(*conds))).scalars():
        distance = haversine_km(lat, lon, h.latitude, h.longitude)
        if radius_km is None or distance <= radius_km:
            rows.append((distance, h.id, h))
    rows.sort(key=lambda r: (r[0], r[1]))
    return [(h, d) for d, _, h in rows[offset:offset + limit]], len(rows)


def _bounding_box(lat: float, lon: float, radius_km: float) -> list:
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM)
    conds = [Hospital.latitude.between(lat - dlat, lat + dlat)]
    cos_lat = math.cos(math.radians(lat))
    if cos_lat > 0.01:
        dlon = math.degrees(radius_km / (EARTH_RADIUS_KM * cos_lat))
        if lon - dlon > -180 and lon + dlon < 180:  # no box across the antimeridian
            conds.append(Hospital.longitude.between(lon - dlon, lon + dlon))
    return conds


async def list_departments(session: AsyncSession, hospital_id: int) -> list[Department]:
    stmt = (select(Department).where(Department.hospital_id == hospital_id)
            .order_by(Department.sort_order, Department.id))
    return list((await session.execute(stmt)).scalars())


def department_tree(departments: Iterable[Department]) -> list[tuple[Department, list[Department]]]:
    """Top-level departments with their children, both in the given (sort_order, id) order."""
    departments = list(departments)
    children: dict[int, list[Department]] = {}
    for d in departments:
        if d.parent_id is not None:
            children.setdefault(d.parent_id, []).append(d)
    return [(d, children.get(d.id, [])) for d in departments if d.parent_id is None]


_TITLE_RANK = {t: i for i, t in enumerate(TITLES)}


async def list_doctors(session: AsyncSession, department: Department) -> list[Doctor]:
    """Active doctors of a department and, for a top-level one, of its sub-departments;
    higher titles first, then by pinyin of the name."""
    ids = [department.id]
    if department.parent_id is None:
        ids += list((await session.execute(
            select(Department.id).where(Department.parent_id == department.id))).scalars())
    stmt = select(Doctor).where(Doctor.department_id.in_(ids), Doctor.active.is_(True))
    doctors = list((await session.execute(stmt)).scalars())
    return sorted(doctors, key=lambda d: (_TITLE_RANK.get(d.title, 9), d.name_pinyin, d.id))


async def fee_table(session: AsyncSession, hospital_id: int) -> dict[tuple[str, str], FeeRule]:
    stmt = select(FeeRule).where(FeeRule.hospital_id == hospital_id)
    return {(r.registration_level, r.title): r for r in (await session.execute(stmt)).scalars()}


async def fees_for(session: AsyncSession, hospital_id: int, registration_level: str,
                   title: str | None) -> tuple[int, int]:
    """(registration_fee, consultation_fee) in fen; title None means a general clinic."""
    stmt = select(FeeRule).where(FeeRule.hospital_id == hospital_id, FeeRule.registration_level == registration_level,
                                 FeeRule.title == (title or "none"))
    rule = (await session.execute(stmt)).scalar_one_or_none()
    if rule is None:
        raise FeeNotConfigured(registration_level=registration_level, title=title or "none")
    return rule.registration_fee, rule.consultation_fee


# --- writes ---------------------------------------------------------------------------------

async def _lock_hospital(session: AsyncSession, hospital_id: int) -> Hospital:
    stmt = select(Hospital).where(Hospital.id == hospital_id).with_for_update()
    hospital = (await session.execute(stmt)).scalar_one_or_none()
    if hospital is None:
        raise NotFound("hospital")
    return hospital


async def do_create_hospital(session: AsyncSession, data: HospitalCreate, now) -> Hospital:
    """A hospital with default rules (HospitalRules column defaults) and the default fee list."""
    his_mode.check_new_hospital(data.his_mode)
    hospital = Hospital(**data.model_dump(), active=True, created_at=now)
    apply_search_keys(hospital)
    session.add(hospital)
    await session.flush()
    session.add(HospitalRules(hospital_id=hospital.id, updated_at=now))
    session.add_all(FeeRule(hospital_id=hospital.id, registration_level=level, title=title,
                            registration_fee=reg, consultation_fee=cons) for level, title, reg, cons in DEFAULT_FEES)
    await session.flush()
    return hospital


async def do_update_hospital(session: AsyncSession, hospital: Hospital, data: HospitalUpdate, *,
                             now: dt.datetime | None = None, bookings: his_mode.HospitalBookings | None = None,
                             connections: his_mode.HisConnections | None = None) -> Hospital:
    """A change of `his_mode` is checked first (catalog/his_mode.py: the ports answer it).
    No hospital row lock here: the check takes the hospital's open schedules first, and a
    hold holds its schedule before it touches the hospital row (its booking's foreign key),
    so locking the hospital first would wait in a circle with a hold in flight."""
    changes = data.changes()
    if "his_mode" in changes:
        await session.refresh(hospital)
        if changes["his_mode"] != hospital.his_mode:
            await his_mode.check_switch(session, hospital.id, changes["his_mode"], now=now,
                                        bookings=bookings, connections=connections)
    for field, value in changes.items():
        setattr(hospital, field, value)
    apply_search_keys(hospital)
    await session.flush()
    return hospital


async def _check_parent(session: AsyncSession, hospital_id: int, parent_id: int) -> Department:
    parent = await get_department_or_raise(session, parent_id, hospital_id=hospital_id, include_inactive=True)
    if parent.parent_id is not None:
        raise DepartmentDepth(parent_id=parent_id)
    return parent


async def _check_name_free(session: AsyncSession, hospital_id: int, parent_id: int | None, name: str,
                           exclude_id: int | None = None) -> None:
    stmt = select(Department.id).where(Department.hospital_id == hospital_id, Department.name == name,
                                       Department.parent_id.is_(None) if parent_id is None
                                       else Department.parent_id == parent_id)
    if exclude_id is not None:
        stmt = stmt.where(Department.id != exclude_id)
    if (await session.execute(stmt.limit(1))).first() is not None:
        raise DepartmentNameTaken(name=name)


async def _flush_department(session: AsyncSession, name: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:  # the UNIQUE index caught a sibling with the same name
        raise DepartmentNameTaken(name=name) from exc


async def do_create_department(session: AsyncSession, hospital_id: int, data: DepartmentCreate) -> Department:
    await _lock_hospital(session, hospital_id)
    if data.parent_id is not None:
        await _check_parent(session, hospital_id, data.parent_id)
    await _check_name_free(session, hospital_id, data.parent_id, data.name)
    department = Department(hospital_id=hospital_id, **data.model_dump())
    apply_search_keys(department)
    session.add(department)
    await _flush_department(session, data.name)
    return department


async def do_update_department(session: AsyncSession, department: Department, data: DepartmentUpdate) -> Department:
    changes = data.changes()
    await _lock_hospital(session, department.hospital_id)
    parent_id = changes.get("parent_id", department.parent_id)
    if "parent_id" in changes and parent_id is not None:
        if parent_id == department.id:
            raise DepartmentDepth(parent_id=parent_id)
        await _check_parent(session, department.hospital_id, parent_id)
        has_children = (await session.execute(
            select(Department.id).where(Department.parent_id == department.id).limit(1))).first()
        if has_children is not None:
            raise DepartmentDepth(parent_id=parent_id)
    name = changes.get("name", department.name)
    if "name" in changes or "parent_id" in changes:
        await _check_name_free(session, department.hospital_id, parent_id, name, exclude_id=department.id)
    min_age, max_age = changes.get("min_age", department.min_age), changes.get("max_age", department.max_age)
    if min_age is not None and max_age is not None and min_age > max_age:
        raise InvalidRequest(field="max_age")
    for field, value in changes.items():
        setattr(department, field, value)
    apply_search_keys(department)
    await _flush_department(session, name)
    return department


async def do_create_doctor(session: AsyncSession, hospital_id: int, data: DoctorCreate) -> Doctor:
    await get_department_or_raise(session, data.department_id, hospital_id=hospital_id, include_inactive=True)
    doctor = Doctor(hospital_id=hospital_id, **data.model_dump())
    apply_search_keys(doctor)
    session.add(doctor)
    await session.flush()
    return doctor


async def do_update_doctor(session: AsyncSession, doctor: Doctor, data: DoctorUpdate) -> Doctor:
    changes = data.changes()
    if "department_id" in changes:
        await get_department_or_raise(session, changes["department_id"], hospital_id=doctor.hospital_id,
                                      include_inactive=True)
    for field, value in changes.items():
        setattr(doctor, field, value)
    apply_search_keys(doctor)
    await session.flush()
    return doctor


async def do_set_fees(session: AsyncSession, hospital_id: int, rows: Iterable[FeeRuleIn]) -> list[FeeRule]:
    """Replace the hospital's whole fee table. Schedules keep the fees they were priced with,
    so nothing refers to these rows by id."""
    rows = list(rows)
    keys = [(r.registration_level, r.title) for r in rows]
    if len(set(keys)) != len(keys):
        raise DuplicateFeeRule()
    await _lock_hospital(session, hospital_id)
    await session.execute(delete(FeeRule).where(FeeRule.hospital_id == hospital_id))
    rules = [FeeRule(hospital_id=hospital_id, **r.model_dump()) for r in rows]
    session.add_all(rules)
    await session.flush()
    return sort_fee_rules(rules)


def sort_fee_rules(rules: Iterable[FeeRule]) -> list[FeeRule]:
    """general, expert, special; within a level: general clinic, then chief down to resident."""
    return sorted(rules, key=lambda r: (REGISTRATION_LEVELS.index(r.registration_level),
                                        _TITLE_RANK.get(r.title, -1)))
