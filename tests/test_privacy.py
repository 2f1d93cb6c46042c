"""I9 privacy: names, phone numbers and ID numbers never rest in plain text and leave the
service only masked.

Known people are written the way users write them (the patients API, the demo seed); then
the raw SQLite file (with its WAL) or a pg_dump of the PostgreSQL database is searched for
every plaintext form of every value, and so are the API answers that list patients and
bookings. Each value is also registered with `remember_sensitive`, so the session-end hook
in conftest checks the whole test run's log for it.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import uuid
from pathlib import Path

import pytest

from guahao.core.crypto import mask_id_number, mask_name, mask_phone
from guahao.core.idcard import check_char
from guahao.demo import data as demo_data
from guahao.demo.seed import demo_id_number, run_seed
from tests.builders import auth, make_account, make_staff
from tests.conftest import remember_sensitive

PG_DUMP = "/usr/bin/pg_dump"


def _resident_id(birth: dt.date, sex: str) -> str:
    seq = random.randrange(500) * 2 + (1 if sex == "M" else 0)  # odd = male
    body = f"{random.choice(('11', '31', '44', '51', '32'))}{random.randrange(1, 99):02d}05{birth:%Y%m%d}{seq:03d}"
    return body + check_char(body)


def _mobile() -> str:
    return f"{random.choice(('139', '138', '186', '158', '150'))}{random.randrange(10**8):08d}"


def _people() -> list[dict]:
    """Fresh values per test, with names no other test or the demo catalog writes in plain text."""
    return [
        {"relationship": "self", "name": "欧阳靖瑶", "id_type": "resident_id",
         "id_number": _resident_id(dt.date(1975, 4, 9), "M"), "phone": _mobile()},
        {"relationship": "spouse", "name": "迪丽娜尔·阿不都", "id_type": "resident_id",
         "id_number": _resident_id(dt.date(1981, 12, 30), "F"), "phone": _mobile()},
        {"relationship": "friend", "name": "Amélie Duchamp-Weiss", "id_type": "passport",
         "id_number": f"E{random.randrange(10**8):08d}", "phone": _mobile(), "birth_date": "1990-02-14", "sex": "F"},
    ]


def plaintext_forms(kind: str, value: str) -> set[str]:
    """Every way the value could sit in plain text: as typed, normalised, E.164, lower-case,
    and JSON-escaped (a JSON column written with ensure_ascii hides CJK as \\uXXXX)."""
    forms = {value}
    if kind == "phone":
        local = value[3:] if value.startswith("+86") else value
        forms |= {local, f"+86{local}", f"86{local}"}
    if kind == "id_number":
        forms |= {value.upper(), value.lower()}
    if not value.isascii():
        escaped = json.dumps(value)[1:-1]
        forms |= {escaped, escaped.upper().replace("\\U", "\\u")}
    return forms


@pytest.fixture
async def world(client, db, settings, clock):
    """The demo data set, plus an account that added three patients and booked for one."""
    now = clock.now()
    report = await run_seed(settings, if_empty=True, clock=clock, db=db, echo=lambda _: None)
    values: list[tuple[str, str]] = [("phone", demo_data.DEMO_PHONE)]
    for person in demo_data.DEMO_PATIENTS:
        values += [("name", person.name), ("id_number", demo_id_number(person)), ("phone", person.phone)]

    account_phone = _mobile()
    values.append(("phone", account_phone))
    remember_sensitive(*plaintext_forms("phone", account_phone))
    _, token = await make_account(db, now, phone=f"+86{account_phone}")
    people = _people()
    for person in people:
        values += [("name", person["name"]), ("id_number", person["id_number"]), ("phone", person["phone"])]
    for kind, value in values:
        remember_sensitive(*plaintext_forms(kind, value))

    patient_ids = []
    for person in people:
        r = await client.post("/api/v1/me/patients", json=person, headers=auth(token))
        assert r.status_code == 201, r.text
        patient_ids.append(r.json()["id"])
    r = await client.post(f"/api/v1/me/patients/{patient_ids[0]}/verify", json={"liveness_token": "pass"},
                          headers=auth(token))
    assert r.status_code == 200 and r.json()["verification"] == "verified", r.text

    first = report.hospitals[0]
    slot_id = await _bookable_slot(client, first.departments["心内科"])
    r = await client.post("/api/v1/bookings", json={"slot_id": slot_id, "patient_id": patient_ids[0]},
                          headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})
    assert r.status_code == 201, r.text
    _, staff_token = await make_staff(db, now, role="front_desk", hospital_id=first.id)
    return {"values": values, "people": people, "token": token, "patients": patient_ids,
            "booking": r.json(), "hospital": first.id, "staff_token": staff_token}


async def _bookable_slot(client, department_id: int) -> int:
    r = await client.get(f"/api/v1/departments/{department_id}/availability")
    assert r.status_code == 200, r.text
    return next(slot["slot_id"] for day in r.json()["days"] for period in day["periods"]
                for schedule in period["schedules"] for slot in schedule["slots"] if slot["state"] == "bookable")


def _leaks(haystack: bytes, values: list[tuple[str, str]]) -> list[str]:
    """The values (masked, so the failure message does not leak them either) found in the bytes."""
    found = []
    for kind, value in values:
        if any(form.encode("utf-8") in haystack for form in plaintext_forms(kind, value)):
            found.append(f"{kind} {_mask(kind, value)}")
    return found


def _mask(kind: str, value: str) -> str:
    return {"name": mask_name, "phone": mask_phone, "id_number": mask_id_number}[kind](value)


async def test_api_answers_show_patients_and_bookings_only_masked(client, world):
    token, booking_id = world["token"], world["booking"]["id"]
    answers = {
        "patients": await client.get("/api/v1/me/patients", headers=auth(token)),
        "bookings": await client.get("/api/v1/bookings", headers=auth(token)),
        "booking": await client.get(f"/api/v1/bookings/{booking_id}", headers=auth(token)),
        "staff search": await client.get(f"/api/v1/staff/hospitals/{world['hospital']}/bookings",
                                         headers=auth(world["staff_token"])),
    }
    for patient_id in world["patients"]:
        answers[f"patient {patient_id}"] = await client.get(f"/api/v1/me/patients/{patient_id}", headers=auth(token))
    answers["hold"] = world["booking"]
    for what, answer in answers.items():
        if not isinstance(answer, dict):
            assert answer.status_code == 200, (what, answer.text)
        body = json.dumps(answer if isinstance(answer, dict) else answer.json(), ensure_ascii=False).encode()
        raw = b"" if isinstance(answer, dict) else answer.content
        assert _leaks(body + raw, world["values"]) == [], what

    listed = answers["patients"].json()["items"]
    for person, item in zip(world["people"], listed, strict=True):
        assert item["name"] == mask_name(person["name"])
        assert item["id_number"] == mask_id_number(person["id_number"])
        assert item["phone"] == mask_phone(person["phone"])
    staff_view = answers["staff search"].json()
    assert [b["id"] for b in staff_view] == [booking_id]
    assert staff_view[0]["patient"]["name"] == mask_name(world["people"][0]["name"])


async def test_database_at_rest_holds_no_plaintext_personal_value(world, database_url, backend):
    """SQLite: the raw database file and its WAL. PostgreSQL: a pg_dump of the database."""
    content = await (_sqlite_bytes(database_url) if backend == "sqlite" else _pg_dump(database_url))
    # control: public catalog text is in the bytes, so the search does read the stored rows
    assert demo_data.HOSPITALS[0].name.encode() in content and "张伟".encode() in content
    assert _leaks(content, world["values"]) == []


async def _sqlite_bytes(database_url: str) -> bytes:
    path = Path(database_url.split(":///", 1)[1])
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


async def _pg_dump(database_url: str) -> bytes:
    libpq_url = database_url.replace("postgresql+asyncpg://", "postgresql://", 1)
    proc = await asyncio.create_subprocess_exec(PG_DUMP, "--no-owner", "--dbname", libpq_url,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    dump, errors = await proc.communicate()
    assert proc.returncode == 0, errors.decode(errors="replace")
    return dump
