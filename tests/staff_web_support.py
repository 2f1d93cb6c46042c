"""Shared steps of the back-office page tests: staff users with real (argon2) passwords,
logging in through the /staff/login form, and a browser-like client."""
from __future__ import annotations

import datetime as dt
import itertools
import re

import httpx
from sqlalchemy import select

from guahao.booking import actions as booking_actions
from guahao.booking.models import Restriction
from guahao.patients.models import Patient
from guahao.staff import service as staff_service
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.web_support import csrf_of

PASSWORD = "staff-password-2026"
_seq = itertools.count(1)


async def make_staff_user(db, now, *, role: str, hospital_id: int | None, name: str = "窗口小王") -> str:
    """A staff user who logs in with PASSWORD; returns the username."""
    username = f"web{role.replace('_', '')}{next(_seq)}"
    async with db.begin() as s:
        await staff_service.do_create_staff(s, username=username, password=PASSWORD, role=role,
                                            hospital_id=hospital_id, display_name=name, now=now)
    return username


def page_client(app, locale: str = "zh-CN") -> httpx.AsyncClient:
    """A cookie-keeping client that asks for HTML, like a browser (but runs no script)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver",
                             headers={"Accept": "text/html", "Accept-Language": locale})


async def login(client: httpx.AsyncClient, username: str, password: str = PASSWORD, otp: str | None = None):
    form = await client.get("/staff/login")
    data = {"csrf_token": csrf_of(form.text), "username": username, "password": password, "next": "/staff/"}
    if otp is not None:
        data["otp"] = otp
    return await client.post("/staff/login", data=data)


async def token_of(client: httpx.AsyncClient, path: str = "/staff/password") -> str:
    """The CSRF token of this browser, read from any staff page with a form."""
    return csrf_of((await client.get(path)).text)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


TODAY = dt.date(2026, 11, 19)  # the conftest clock: Thursday 10:00 in Shanghai
ROLES = ("hospital_admin", "scheduler", "front_desk")


async def _confirmed_booking(db, now, *, account_id: int, patient_id: int, slot_id: int) -> tuple[int, str]:
    booked_at = now - dt.timedelta(days=1)  # booking closes when the period starts: booked yesterday
    async with db.begin() as s:
        booking = await booking_actions.do_hold(s, account_id=account_id, patient_id=patient_id, slot_id=slot_id,
                                                now=booked_at)
    if booking.state == "held":
        async with db.begin() as s:
            await booking_actions.do_confirm(s, booking.id, now=booked_at + dt.timedelta(minutes=1))
    return booking.id, booking.booking_code


async def front_desk_world(db, clock, *, name: str = "北京协和医院") -> dict:
    """A hospital with today's morning clinic (4 platform seats and 2 on-site), two paid
    bookings of two patients, a restricted person, and one staff user per hospital role."""
    now = clock.now()
    hid = await make_hospital(db, now, name=name)
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep, name="张伟")
    schedule, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=TODAY,
                                          capacity=4, onsite=2, registration_fee=1500, consultation_fee=0,
                                          release_at=now - dt.timedelta(days=3))
    account_id, _ = await make_account(db, now)
    first_id, second_id = make_id_number(), make_id_number(dt.date(1985, 3, 2), "F")
    first = await make_patient(db, now, account_id, id_number=first_id, name="钱多多")
    second = await make_patient(db, now, account_id, id_number=second_id, name="孙小美", birth=dt.date(1985, 3, 2),
                                sex="F")
    b1, code1 = await _confirmed_booking(db, now, account_id=account_id, patient_id=first, slot_id=slots[0])
    b2, code2 = await _confirmed_booking(db, now, account_id=account_id, patient_id=second, slot_id=slots[0])
    async with db.begin() as s:
        person_id = await s.scalar(select(Patient.person_id).where(Patient.id == second))
        restriction = Restriction(person_id=person_id, hospital_id=hid, starts_at=now,
                                  until=now + dt.timedelta(days=30), reason="3 no-shows", strikes=3)
        s.add(restriction)
        await s.flush()
        restriction_id = restriction.id
    names = {"hospital_admin": "李主任", "scheduler": "周排班", "front_desk": "窗口小王"}
    users = {role: await make_staff_user(db, now, role=role, hospital_id=hid, name=names[role]) for role in ROLES}
    return {"hospital_id": hid, "department_id": dep, "doctor_id": doc, "schedule_id": schedule, "slots": slots,
            "bookings": [b1, b2], "codes": [code1, code2], "id_numbers": [first_id, second_id],
            "names": ["钱多多", "孙小美"], "restriction_id": restriction_id, "users": users}
