"""Helpers for the HIS connection and 建档 tests: a hospital connected to a real simulator
process (tests/his_support.py) through the operator API, patients, holds."""
from __future__ import annotations

import datetime as dt
import uuid

import pytest

from guahao.his import connections
from guahao.his.client import HisClient
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital, make_staff

DAY = dt.date(2026, 11, 21)


@pytest.fixture(autouse=True)
async def fresh_his_clients():
    """Clients are cached per hospital id and row version: ids repeat across tests (rows are
    wiped) and the frozen clock repeats `updated_at`, so every test starts without them."""
    await connections.close_all()
    yield
    await connections.close_all()


async def operator_headers(db, now: dt.datetime) -> dict[str, str]:
    _, token = await make_staff(db, now, role="platform_operator", hospital_id=None)
    return auth(token)


def connection_body(sim, *, pool: str = "guahao", platform: str = "guahao", **extra) -> dict:
    return {"base_url": sim.url, "platform": platform, "pool": pool, "key": sim.platform_key(platform).hex(),
            **extra}


async def connect(client, headers: dict, hospital_id: int, sim, **extra) -> dict:
    r = await client.put(f"/api/v1/staff/hospitals/{hospital_id}/his-connection",
                         json=connection_body(sim, **extra), headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


def sim_client(sim) -> HisClient:
    """The simulator as the hospital's HIS, for setting up records behind guahao's back."""
    return HisClient(sim.url, "guahao", sim.platform_key("guahao"), timeout=10)


async def hold(client, token: str, slot: int, patient: int, key: str | None = None, **headers):
    return await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                             headers={**auth(token), "Idempotency-Key": key or uuid.uuid4().hex, **headers})


async def hospital_world(db, now: dt.datetime, *, days: int = 2, fee: int = 500, **rules) -> dict:
    """A hospital (local mode) with `rules`, one doctor, a schedule on each of `days` days
    from DAY (3 seats each), an account with one verified patient."""
    hid = await make_hospital(db, now, **rules)
    dep = await make_department(db, hid, name="内科")
    doc = await make_doctor(db, hid, dep)
    slots = []
    for n in range(days):
        _, day_slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                           day=DAY + dt.timedelta(days=n), capacity=3, registration_fee=fee,
                                           consultation_fee=0)
        slots.append(day_slots[0])
    account_id, token = await make_account(db, now)
    id_number = make_id_number()
    patient = await make_patient(db, now, account_id, name="王小明", id_number=id_number)
    return {"hospital": hid, "department": dep, "doctor": doc, "slots": slots, "account": account_id,
            "token": token, "patient": patient, "id_number": id_number, "name": "王小明"}
