"""`guahao seed --demo [--if-empty]`: load the demo data set through the features' services.

Everything is written the way staff and patients would write it (catalog, scheduling, staff,
accounts, patients and booking service functions), one unit of work per step, so the demo
data obeys every rule the product enforces. Time comes from the clock passed in (the
system clock from the command line, a frozen one in tests).

The first unit of work checks that the database holds no hospital and creates the first
one. On SQLite that unit starts with BEGIN IMMEDIATE; on PostgreSQL it takes a transaction
advisory lock first. So several processes started with `--if-empty` at once (containers
that all run the README command) seed once: the others wait, then see a hospital and stop.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import typer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.booking import hospital_actions
from guahao.booking import queries as booking_queries
from guahao.booking.lifecycle import Actor
from guahao.catalog import labels
from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.catalog.schemas import (
    DepartmentCreate,
    DoctorCreate,
    FeeRuleIn,
    HospitalCreate,
    HospitalRulesUpdate,
    HospitalUpdate,
)
from guahao.config import Settings
from guahao.core import crypto
from guahao.core.clock import Clock, SystemClock
from guahao.core.db import Database, create_database
from guahao.core.idcard import check_char
from guahao.core.ratelimit import RateLimiter
from guahao.demo import data
from guahao.his import connections as his_connections
from guahao.his import ports as his_ports
from guahao.his.client import HisClient
from guahao.his.schemas import HisConnectionUpdate
from guahao.his.sim.signing import platform_key as his_platform_key
from guahao.patients import service as patients_service
from guahao.patients.face_check import SandboxFaceCheck
from guahao.patients.schemas import PatientCreate
from guahao.scheduling import service as scheduling_service
from guahao.scheduling import templates as scheduling_templates
from guahao.scheduling.schemas import TemplateCreate
from guahao.staff import service as staff_service

_ADVISORY_LOCK_KEY = "guahao.demo.seed"


class SeedRefused(typer.Exit):
    """The command stops with exit status 1; `run_seed` has printed the message to stderr."""

    def __init__(self, message: str) -> None:
        super().__init__(code=1)
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass
class BuiltHospital:
    spec: data.DemoHospital
    id: int
    departments: dict[str, int] = field(default_factory=dict)  # name -> id
    doctors: dict[str, int] = field(default_factory=dict)  # name -> id
    schedules: int = 0


@dataclass
class SeedReport:
    """What was loaded; `skipped` when --if-empty found hospitals already."""

    skipped: bool = False
    hospitals: list[BuiltHospital] = field(default_factory=list)
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    suspended_schedule_id: int | None = None
    account_id: int | None = None
    patient_ids: list[int] = field(default_factory=list)
    staff: dict[str, int] = field(default_factory=dict)  # username -> id


def demo_id_number(patient: data.DemoPatient) -> str:
    return patient.id_body + check_char(patient.id_body)


async def run_seed(settings: Settings, *, if_empty: bool = False, clock: Clock | None = None,
                   db: Database | None = None, echo: Callable[[str], None] = print) -> SeedReport:
    """Load the demo data set. With `if_empty`, do nothing when any hospital exists; without
    it, refuse a database that already has hospitals (the demo would collide with them)."""
    try:
        if settings.env == "production":
            raise SeedRefused("the demo data set has published passwords; it is refused when GUAHAO_ENV=production")
        crypto.configure_from(settings)
        own_db = db is None
        database = db or create_database(settings.database_url, pool_size=2)
        try:
            report = await _seed(database, settings, clock or SystemClock(), if_empty=if_empty)
        finally:
            if own_db:
                await database.dispose()
    except SeedRefused as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        raise
    if report.skipped:
        echo("Demo data not loaded: the database already has hospitals (--if-empty).")
    else:
        _print_summary(report, settings, echo)
    return report


async def _seed(db: Database, settings: Settings, clock: Clock, *, if_empty: bool) -> SeedReport:
    now = clock.now()
    report = SeedReport()
    first, *others = data.HOSPITALS
    async with db.begin() as session:
        existing = await _count_hospitals_locked(session)
        if existing:
            if if_empty:
                return SeedReport(skipped=True)
            raise SeedRefused(f"the database already has {existing} hospital(s); the demo data is meant for an "
                              "empty database (use --if-empty to skip, or point GUAHAO_DATABASE_URL elsewhere)")
        report.hospitals.append(await _create_hospital(session, first, now))
    for spec in others:
        async with db.begin() as session:
            report.hospitals.append(await _create_hospital(session, spec, now))

    for built in report.hospitals:
        async with db.begin() as session:
            await _create_departments_and_doctors(session, built)
        if built.spec.his is not None:
            async with db.begin() as session:
                await _connect_to_his(session, built, settings, now)
        async with db.begin() as session:
            await _create_templates(session, built, now)
        async with db.begin() as session:
            tz = ZoneInfo((await catalog_service.get_hospital_or_raise(session, built.id)).timezone)
            report.first_day, report.last_day = data.demo_schedule_range(now.astimezone(tz).date())
            outcome = await scheduling_service.do_generate(session, built.id, report.first_day, report.last_day,
                                                           publish=True, now=now)
            built.schedules = outcome.created

    async with db.begin() as session:
        report.suspended_schedule_id = await _suspend_one(session, report.hospitals[0], now)
    report.staff = await _create_staff(db, report.hospitals, clock)
    report.account_id, report.patient_ids = await _create_demo_account(db, settings, clock)
    return report


async def _count_hospitals_locked(session: AsyncSession) -> int:
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": _ADVISORY_LOCK_KEY})
    # Any hospital, active or not, means "not empty" (list_hospitals lists active ones only).
    return await catalog_service.count_hospitals(session)


# --- catalog --------------------------------------------------------------------------------

async def _create_hospital(session: AsyncSession, spec: data.DemoHospital, now: dt.datetime) -> BuiltHospital:
    hospital = await catalog_service.do_create_hospital(session, HospitalCreate(
        name=spec.name, short_name=spec.short_name, level=spec.level, city=spec.city, district=spec.district,
        address=spec.address, phone=spec.phone, latitude=spec.latitude, longitude=spec.longitude,
        introduction=spec.introduction, entrance=spec.entrance), now)
    registration_fee, consultation = data.FEE_GRADES[spec.fee_grade]
    await catalog_service.do_set_fees(session, hospital.id, [
        FeeRuleIn(registration_level=level, title=title, registration_fee=registration_fee, consultation_fee=fee)
        for level, by_title in consultation.items() for title, fee in by_title.items()])
    if spec.rules:
        values = {**hospital_rules.default_values(), **spec.rules}
        await hospital_rules.do_update_rules(session, hospital.id, HospitalRulesUpdate(**values), now=now,
                                          staff_id=None)
    return BuiltHospital(spec=spec, id=hospital.id)


async def _create_departments_and_doctors(session: AsyncSession, built: BuiltHospital) -> None:
    for order, dept in enumerate(built.spec.departments, start=1):
        parent = await _create_department(session, built, dept, parent_id=None, sort_order=order * 10)
        for child_order, child in enumerate(dept.children, start=1):
            # a child inherits its parent's age and sex limits unless it sets its own
            child = dataclasses.replace(child, max_age=child.max_age or dept.max_age,
                                        allowed_sex=child.allowed_sex or dept.allowed_sex)
            await _create_department(session, built, child, parent_id=parent, sort_order=order * 10 + child_order)
    for doc in built.spec.doctors:
        level = doc.level or data.LEVEL_BY_TITLE[doc.title]
        intro = (f"{doc.name},{labels.title(doc.title, 'zh-CN')},从事{doc.department}临床工作多年,"
                 f"擅长{doc.specialty}。")
        doctor = await catalog_service.do_create_doctor(session, built.id, DoctorCreate(
            department_id=built.departments[doc.department], name=doc.name, title=doc.title,
            registration_level=level, specialty=doc.specialty, introduction=intro, his_code=doc.his_code))
        built.doctors[doc.name] = doctor.id


async def _create_department(session: AsyncSession, built: BuiltHospital, dept: data.Dept, *,
                             parent_id: int | None, sort_order: int) -> int:
    department = await catalog_service.do_create_department(session, built.id, DepartmentCreate(
        name=dept.name, parent_id=parent_id, location=dept.location, introduction=dept.introduction,
        sort_order=sort_order, max_age=dept.max_age, allowed_sex=dept.allowed_sex, his_code=dept.his_code))
    built.departments[dept.name] = department.id
    return department.id


# --- the simulated HIS ----------------------------------------------------------------------

async def _connect_to_his(session: AsyncSession, built: BuiltHospital, settings: Settings, now: dt.datetime) -> None:
    """Point the hospital at the embedded simulator (started by `guahao serve`) and switch it
    to its mode, the way the operator would (the connection first, then the mode)."""
    link = built.spec.his
    assert link is not None
    await his_connections.do_set_connection(session, built.id, HisConnectionUpdate(
        base_url=settings.his_sim_url, platform=link.platform, pool=link.pool,
        key=his_platform_key(settings.his_sim_key, link.platform).hex()), now=now)
    hospital = await catalog_service.get_hospital_or_raise(session, built.id, include_inactive=True)
    await catalog_service.do_update_hospital(session, hospital, HospitalUpdate(his_mode=link.mode), now=now,
                                             bookings=booking_queries, connections=his_ports)


async def seed_his_sim_records(settings: Settings) -> None:
    """A freshly seeded simulator (`guahao serve` starts it): the demo account's own patient
    has been to the synced demo hospital before, so they hold its visit card (建档) and can
    book there under `existing_record_required`; their child has not, and is told to register
    first. (Both demo HIS hospitals share the one simulator, so its records too.)"""
    person = data.DEMO_PATIENTS[0]
    client = HisClient(settings.his_sim_url, "guahao", his_platform_key(settings.his_sim_key, "guahao"),
                       timeout=10)
    try:
        await client.create_patient(demo_id_number(person), person.name)
    finally:
        await client.aclose()


# --- schedules ------------------------------------------------------------------------------

async def _create_templates(session: AsyncSession, built: BuiltHospital, now: dt.datetime) -> None:
    for doc in built.spec.doctors:
        platform, onsite = data.CAPACITY_BY_TITLE[doc.title]
        for weekday, period in doc.sessions:
            await scheduling_templates.do_create_template(session, built.id, TemplateCreate(
                doctor_id=built.doctors[doc.name], weekday=weekday, period=period,
                platform_capacity=platform, onsite_capacity=onsite), now=now)
    for clinic in built.spec.clinics:
        for weekday in clinic.weekdays:
            await scheduling_templates.do_create_template(session, built.id, TemplateCreate(
                department_id=built.departments[clinic.department], weekday=weekday, period=clinic.period,
                platform_capacity=clinic.platform_capacity, onsite_capacity=clinic.onsite_capacity), now=now)


async def _suspend_one(session: AsyncSession, built: BuiltHospital, now: dt.datetime) -> int | None:
    """停诊 the first released doctor's clinic after today, as a hospital would."""
    rules = await hospital_rules.get_rules(session, built.id)
    today = now.astimezone(rules.tz).date()
    schedules = await scheduling_service.list_schedules(session, built.id, today + dt.timedelta(days=1),
                                                        today + dt.timedelta(days=data.SCHEDULE_DAYS - 1),
                                                        status="published")
    target = next((s for s in schedules if s.doctor_id is not None and s.release_at <= now), None)
    if target is None:
        return None
    await hospital_actions.do_suspend(session, schedule_id=target.id, hospital_id=None, reason=data.SUSPEND_REASON,
                                      actor=Actor.system(), now=now)
    return target.id


# --- people ---------------------------------------------------------------------------------

async def _create_staff(db: Database, hospitals: list[BuiltHospital], clock: Clock) -> dict[str, int]:
    by_key = {h.spec.key: h.id for h in hospitals}
    created = {}
    for person in data.STAFF:
        async with db.begin() as session:
            user = await staff_service.do_create_staff(
                session, username=person.username, password=data.DEMO_PASSWORD, role=person.role,
                hospital_id=by_key[person.hospital_key] if person.hospital_key else None,
                display_name=person.display_name, now=clock.now())
            created[person.username] = user.id
    return created


async def _create_demo_account(db: Database, settings: Settings, clock: Clock) -> tuple[int, list[int]]:
    """The demo account and its patients, verified through the sandbox face check."""
    phone = accounts_service.normalize_mobile(data.DEMO_PHONE)
    async with db.begin() as session:
        account = await accounts_service.do_get_or_create_account(session, phone, now=clock.now())
        account_id = account.id
    patient_ids = []
    for person in data.DEMO_PATIENTS:
        async with db.begin() as session:
            patient = await patients_service.do_add_patient(session, account_id=account_id, data=PatientCreate(
                relationship=person.relationship, name=person.name, id_number=demo_id_number(person),
                phone=person.phone), max_patients=settings.max_patients_per_account, now=clock.now())
            patient_ids.append(patient.id)
    face_check, limiter = SandboxFaceCheck(), RateLimiter()
    for patient_id in patient_ids:
        await patients_service.verify_identity(db, face_check, limiter, clock, account_id=account_id,
                                               patient_id=patient_id, liveness_token=data.LIVENESS_TOKEN)
    return account_id, patient_ids


# --- summary --------------------------------------------------------------------------------

def _print_summary(report: SeedReport, settings: Settings, echo: Callable[[str], None]) -> None:
    base = settings.base_url.rstrip("/")
    cities = sorted({h.spec.city for h in report.hospitals})
    doctors = sum(len(h.doctors) for h in report.hospitals)
    schedules = sum(h.schedules for h in report.hospitals)
    by_key = {h.spec.key: h.spec.name for h in report.hospitals}
    lines = [
        f"Demo data loaded: {len(report.hospitals)} hospitals in {len(cities)} cities ({'、'.join(cities)}), "
        f"{doctors} doctors, {schedules} schedules from {report.first_day} to {report.last_day} "
        f"(each day opens 7 days ahead at 08:00; schedule {report.suspended_schedule_id} suspended).",
        "",
        f"  Open      {base}/",
        f"  API docs  {base}/docs",
        "",
        f"Patient login: mobile {data.DEMO_PHONE}, with two verified patients "
        f"({'、'.join(crypto.mask_name(p.name) for p in data.DEMO_PATIENTS)}).",
        "  In development the SMS code is printed on the server console (console SMS provider).",
        f"Staff logins (password {data.DEMO_PASSWORD}):",
    ]
    for person in data.STAFF:
        where = by_key[person.hospital_key] if person.hospital_key else "all hospitals"
        lines.append(f"  {person.username:<11} {person.role:<18} {where}")
    linked = [h.spec for h in report.hospitals if h.spec.his is not None]
    if linked:
        lines += ["", f"Hospitals on the simulated HIS ({settings.his_sim_url}, started by `guahao serve`): "
                      + "、".join(f"{h.name} ({h.his.mode})" for h in linked if h.his is not None)
                      + "; their schedules come from the HIS."]
    lines += ["", "WARNING: the demo passwords are published; use them for development only and never load "
                  "demo data into a production database."]
    for line in lines:
        echo(line)
