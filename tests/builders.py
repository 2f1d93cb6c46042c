"""Small builders for test data. They write rows directly (fast, explicit); the behaviour
under test goes through the HTTP API or the service functions."""
from __future__ import annotations

import datetime as dt
import itertools

from guahao.accounts import service as accounts_service
from guahao.accounts.models import Account
from guahao.catalog.models import Department, Doctor, FeeRule, Hospital, HospitalRules
from guahao.core.crypto import lookup_hash
from guahao.staff.models import StaffUser

_seq = itertools.count(1)
TTL = dt.timedelta(days=30)


async def make_hospital(db, now: dt.datetime, *, name: str = "测试医院", city: str = "北京市",
                        district: str = "东城区", lat: float = 39.91, lon: float = 116.41, **rules) -> int:
    async with db.begin() as s:
        h = Hospital(name=name, level="三级甲等", city=city, district=district, address="测试路1号",
                     phone="010-12345678", latitude=lat, longitude=lon, introduction="", created_at=now)
        s.add(h)
        await s.flush()
        s.add(HospitalRules(hospital_id=h.id, updated_at=now, **rules))
        for level, title, reg, cons in (("general", "none", 500, 0), ("general", "attending", 500, 1000),
                                        ("expert", "chief", 500, 5000), ("expert", "associate_chief", 500, 3000)):
            s.add(FeeRule(hospital_id=h.id, registration_level=level, title=title, registration_fee=reg,
                          consultation_fee=cons))
        return h.id


async def make_department(db, hospital_id: int, *, name: str = "内科", parent_id: int | None = None, **extra) -> int:
    async with db.begin() as s:
        d = Department(hospital_id=hospital_id, parent_id=parent_id, name=name, **extra)
        s.add(d)
        await s.flush()
        return d.id


async def make_doctor(db, hospital_id: int, department_id: int, *, name: str = "张伟", title: str = "chief",
                      registration_level: str = "expert") -> int:
    async with db.begin() as s:
        d = Doctor(hospital_id=hospital_id, department_id=department_id, name=name, title=title,
                   registration_level=registration_level)
        s.add(d)
        await s.flush()
        return d.id


async def make_account(db, now: dt.datetime, phone: str | None = None) -> tuple[int, str]:
    """An account and a bearer token for it."""
    phone = phone or f"+86138{next(_seq):08d}"
    async with db.begin() as s:
        a = Account(phone=phone, phone_hash=lookup_hash("phone", phone), created_at=now)
        s.add(a)
        await s.flush()
        token = await accounts_service.do_create_session(s, now=now, ttl=TTL, account_id=a.id)
        return a.id, token


async def make_staff(db, now: dt.datetime, *, role: str, hospital_id: int | None) -> tuple[int, str]:
    """A staff user (password hash irrelevant here) and a bearer token for it."""
    async with db.begin() as s:
        u = StaffUser(username=f"staff{next(_seq)}", password_hash="x", display_name="测试", role=role,
                      hospital_id=hospital_id, created_at=now)
        s.add(u)
        await s.flush()
        token = await accounts_service.do_create_session(s, now=now, ttl=TTL, staff_id=u.id)
        return u.id, token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
