"""Builders for booking tests: a published schedule with seats, verified patients."""
from __future__ import annotations

import datetime as dt
import itertools
import random

from guahao.core.clock import SHANGHAI
from guahao.core.crypto import lookup_hash
from guahao.patients.models import Patient, Person
from guahao.scheduling import seats
from guahao.scheduling.models import Schedule, Slot
from tests.conftest import remember_sensitive

_seq = itertools.count(1)
_PROVINCES = ("11", "31", "44", "51", "32")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def make_id_number(birth: dt.date = dt.date(1990, 5, 17), sex: str = "M") -> str:
    """A valid resident ID number (GB 11643 check character) that is unique per call."""
    n = next(_seq)
    seq3 = (n * 2 + (1 if sex == "M" else 0)) % 1000
    if (seq3 % 2 == 1) != (sex == "M"):
        seq3 = (seq3 + 1) % 1000
    body = f"{_PROVINCES[n % 5]}0102{birth:%Y%m%d}{seq3:03d}"
    body = body[:6] + body[6:14] + body[14:17]
    total = sum(int(c) * w for c, w in zip(body, _WEIGHTS))
    return body + "10X98765432"[total % 11]


async def make_patient(db, now: dt.datetime, account_id: int, *, id_number: str | None = None,
                       name: str = "王小明", birth: dt.date = dt.date(1990, 5, 17), sex: str = "M",
                       verified: bool = True) -> int:
    id_number = id_number or make_id_number(birth, sex)
    phone = f"+86139{random.randrange(10**8):08d}"
    remember_sensitive(id_number, phone[3:], name)
    identity = lookup_hash("identity", f"resident_id:{id_number}")
    async with db.begin() as s:
        from sqlalchemy import select

        person_id = await s.scalar(select(Person.id).where(Person.identity_hash == identity))
        if person_id is None:
            person = Person(identity_hash=identity, created_at=now)
            s.add(person)
            await s.flush()
            person_id = person.id
        p = Patient(account_id=account_id, person_id=person_id, relationship="other",
                    name=name, id_type="resident_id", id_number=id_number, birth_date=birth, sex=sex, phone=phone,
                    verification="verified" if verified else "unverified", verified_at=now if verified else None,
                    created_at=now, updated_at=now)
        s.add(p)
        await s.flush()
        return p.id


async def make_schedule(db, now: dt.datetime, *, hospital_id: int, department_id: int, doctor_id: int | None,
                        day: dt.date, period: str = "morning", capacity: int = 5, onsite: int = 0,
                        registration_fee: int = 500, consultation_fee: int = 1000, status: str = "published",
                        release_at: dt.datetime | None = None, bands: int = 1) -> tuple[int, list[int]]:
    """A schedule 08:00-12:00 local with `bands` platform slots sharing `capacity` seats."""
    start = dt.datetime.combine(day, dt.time(8, 0), tzinfo=SHANGHAI).astimezone(dt.UTC)
    end = start + dt.timedelta(hours=4)
    async with db.begin() as s:
        sch = Schedule(hospital_id=hospital_id, department_id=department_id, doctor_id=doctor_id, date=day,
                       period=period, starts_at=start, ends_at=end, registration_level="expert",
                       registration_fee=registration_fee, consultation_fee=consultation_fee, status=status,
                       release_at=release_at or now - dt.timedelta(hours=1), created_at=now, updated_at=now)
        s.add(sch)
        await s.flush()
        slots, visit_no, step = [], 1, (end - start) / bands
        per_band = [capacity // bands + (1 if i < capacity % bands else 0) for i in range(bands)]
        for i in range(bands):
            for pool, cap in (("platform", per_band[i]), ("onsite", onsite if i == 0 else 0)):
                if cap == 0 and pool == "onsite":
                    continue
                slot = Slot(schedule_id=sch.id, hospital_id=hospital_id, pool=pool, starts_at=start + step * i,
                            ends_at=start + step * (i + 1), capacity=cap, first_visit_no=visit_no)
                s.add(slot)
                visit_no += cap
                slots.append(slot)
        await s.flush()
        await seats.do_create_positions(s, slots)
        return sch.id, [sl.id for sl in slots if sl.pool == "platform"]
