"""Bulk data for a rush: one hospital, department, doctor and schedule; N accounts, each with
a session token and one verified patient (a distinct real person).

Rows go in through the product's models in multi-row INSERTs (so the `Encrypted` and
`UTCDateTime` column types still encrypt and normalise), a few thousand rows per statement.
"""
from __future__ import annotations

import datetime as dt
import random
import secrets
from dataclasses import dataclass

from sqlalchemy import func, insert, select, update

import guahao.models  # noqa: F401 - every table, so that foreign keys resolve
from guahao.accounts import service as accounts_service
from guahao.accounts.models import Account, AuthSession
from guahao.booking.models import LIVE_STATES, Booking
from guahao.catalog.models import Department, Doctor, Hospital, HospitalRules
from guahao.core.clock import SHANGHAI, local_datetime
from guahao.core.crypto import for_row, lookup_hash, new_row_key
from guahao.core.db import Database
from guahao.core.idcard import check_char
from guahao.core.idempotency import IdempotencyKey
from guahao.patients.models import Patient, Person
from guahao.scheduling import seats
from guahao.scheduling.models import Schedule, Slot

CHUNK = 1000
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英"


@dataclass
class Client:
    token: str
    patient_id: int


@dataclass
class RushData:
    hospital_id: int
    schedule_id: int
    slot_id: int
    clients: list[Client]


def _identities(count: int, rng: random.Random) -> list[tuple[str, dt.date, str]]:
    """Distinct valid resident ID numbers (GB 11643 check character), with birth date and sex.

    A random county code per run keeps them distinct from earlier runs on the same database."""
    county = f"{rng.choice((11, 12, 13, 31, 32, 33, 44, 51))}{rng.randrange(10000):04d}"
    out = []
    for i in range(count):
        birth = dt.date(1950, 1, 1) + dt.timedelta(days=i // 450)  # 450 per day: 18,000 days for 8.1 M
        sex = "M" if i % 2 else "F"
        seq = (i % 450) * 2 + (1 if sex == "M" else 0)  # odd for men, even for women
        first17 = f"{county}{birth:%Y%m%d}{seq:03d}"
        out.append((first17 + check_char(first17), birth, sex))
    return out


async def _insert_returning_ids(db: Database, model, rows: list[dict]) -> list[int]:
    ids: list[int] = []
    for start in range(0, len(rows), CHUNK):
        async with db.begin() as s:
            result = await s.execute(insert(model).returning(model.id, sort_by_parameter_order=True),
                                     rows[start:start + CHUNK])
            ids += result.scalars().all()
    return ids


async def seed_clients(db: Database, count: int, now: dt.datetime, *, seed: int | None = None) -> list[Client]:
    """`count` accounts with a 30-day session and one verified patient each."""
    rng = random.Random(seed)
    run = rng.randrange(10**4)
    phones = [f"+8613{run:04d}{i:05d}" if count <= 10**5 else f"+861{run % 100:02d}{i:08d}" for i in range(count)]
    account_keys = [new_row_key() for _ in phones]
    account_ids = await _insert_returning_ids(db, Account, [
        {"row_key": k, "phone": for_row(p, k), "phone_hash": lookup_hash("phone", p), "locale": "zh-CN",
         "created_at": now} for p, k in zip(phones, account_keys)])
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    expires = now + dt.timedelta(days=30)
    sessions = [{"token_hash": accounts_service.token_hash(t), "account_id": a, "created_at": now,
                 "expires_at": expires} for t, a in zip(tokens, account_ids)]
    for start in range(0, count, CHUNK):
        async with db.begin() as s:
            await s.execute(insert(AuthSession), sessions[start:start + CHUNK])
    identities = _identities(count, rng)
    person_ids = await _insert_returning_ids(db, Person, [
        {"identity_hash": lookup_hash("identity", f"resident_id:{number}"), "created_at": now}
        for number, _, _ in identities])
    patient_keys = [new_row_key() for _ in phones]
    patient_ids = await _insert_returning_ids(db, Patient, [
        {"account_id": a, "person_id": p, "relationship": "self", "row_key": k,
         "name": for_row(rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN), k),
         "id_type": "resident_id", "id_number": for_row(number, k), "birth_date": birth, "sex": sex,
         "phone": for_row(phone, k), "verification": "verified", "verified_at": now, "created_at": now,
         "updated_at": now}
        for a, p, (number, birth, sex), phone, k in zip(account_ids, person_ids, identities, phones, patient_keys)])
    return [Client(t, p) for t, p in zip(tokens, patient_ids)]


async def seed_schedule(db: Database, now: dt.datetime, *, capacity: int,
                        registration_fee: int = 500, consultation_fee: int = 5000) -> tuple[int, int, int]:
    """A hospital with default rules, a department, a chief doctor, and a draft morning schedule
    three days ahead with one platform slot of `capacity` seats. Returns (hospital, schedule, slot)."""
    day = now.astimezone(SHANGHAI).date() + dt.timedelta(days=3)
    start = local_datetime(day, dt.time(8, 0), SHANGHAI)
    async with db.begin() as s:
        hospital = Hospital(name="压测医院", level="三级甲等", city="北京市", district="东城区", address="压测路1号",
                            phone="010-12345678", latitude=39.91, longitude=116.41, introduction="", created_at=now)
        s.add(hospital)
        await s.flush()
        s.add(HospitalRules(hospital_id=hospital.id, updated_at=now))
        department = Department(hospital_id=hospital.id, name="心内科", location="门诊楼3层")
        s.add(department)
        await s.flush()
        doctor = Doctor(hospital_id=hospital.id, department_id=department.id, name="张伟", title="chief",
                        registration_level="expert")
        s.add(doctor)
        await s.flush()
        schedule = Schedule(hospital_id=hospital.id, department_id=department.id, doctor_id=doctor.id, date=day,
                            period="morning", starts_at=start, ends_at=start + dt.timedelta(hours=4),
                            registration_level="expert", registration_fee=registration_fee,
                            consultation_fee=consultation_fee, status="draft",
                            release_at=now + dt.timedelta(days=1), created_at=now, updated_at=now)
        s.add(schedule)
        await s.flush()
        slot = Slot(schedule_id=schedule.id, hospital_id=hospital.id, pool="platform", starts_at=start,
                    ends_at=start + dt.timedelta(hours=4), capacity=capacity, first_visit_no=1)
        s.add(slot)
        await s.flush()
        await seats.do_create_positions(s, [slot])
        return hospital.id, schedule.id, slot.id


async def publish(db: Database, schedule_id: int, release_at: dt.datetime, now: dt.datetime) -> None:
    """Publish the schedule with its release instant (T0)."""
    async with db.begin() as s:
        await s.execute(update(Schedule).where(Schedule.id == schedule_id)
                        .values(status="published", release_at=release_at, updated_at=now))


@dataclass
class SlotCheck:
    live_bookings: int
    distinct_visit_nos: int
    seats_taken: int
    visit_no_range: tuple[int, int] | None


async def check_slot(db: Database, slot_id: int, now: dt.datetime) -> SlotCheck:
    """What the database says after the rush: live bookings, their visit numbers, taken seats."""
    async with db.read() as s:
        live, distinct, low, high = (await s.execute(
            select(func.count(), func.count(func.distinct(Booking.visit_no)), func.min(Booking.visit_no),
                   func.max(Booking.visit_no))
            .where(Booking.slot_id == slot_id, Booking.state.in_(LIVE_STATES)))).one()
        taken = (await seats.taken_counts(s, [slot_id], now)).get(slot_id, 0)
    return SlotCheck(live, distinct, taken, (low, high) if live else None)


async def stored_refusals(db: Database, since: dt.datetime) -> int:
    """Refusals (409) stored under an Idempotency-Key since `since` (the gate's answers are
    stored too: a retry of the key must get the same answer)."""
    async with db.read() as s:
        return await s.scalar(select(func.count()).select_from(IdempotencyKey)
                              .where(IdempotencyKey.status_code == 409, IdempotencyKey.created_at >= since)) or 0
