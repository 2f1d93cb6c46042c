"""A world for draw tests: a hospital releasing by draw, a schedule whose draw opens soon, and
helpers to enter, run and read the draw."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from guahao.booking.models import Booking
from guahao.draw import allocation
from guahao.draw import service as draw_service
from guahao.draw.models import Draw, DrawEntry
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

ROOT = Path(__file__).resolve().parent.parent
VERIFIER = ROOT / "tools" / "verify_draw.py"
_ids = itertools.count(1)


@dataclass
class DrawWorld:
    hospital_id: int
    department_id: int
    schedule_id: int
    slot_ids: list[int]
    release_at: dt.datetime
    draw_id: int


async def draw_world(db, clock, *, capacity: int = 5, window: int = 30, prequeue: int = 0, bands: int = 1,
                     fee: int = 1000, mode: str = "draw") -> DrawWorld:
    now = clock.now()
    hid = await make_hospital(db, now, release_mode=mode, draw_window_seconds=window, draw_prequeue_minutes=prequeue)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    release_at = now + dt.timedelta(minutes=30)
    day = (now + dt.timedelta(days=3)).date()
    sid, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=day,
                                     capacity=capacity, release_at=release_at, bands=bands,
                                     registration_fee=fee // 2, consultation_fee=fee - fee // 2)
    async with db.begin() as s:
        await draw_service.do_apply_modes(s, hid, now=now)
    async with db.read() as s:
        draw_id = await s.scalar(select(Draw.id).where(Draw.schedule_id == sid))
    return DrawWorld(hid, dep, sid, slots, release_at, draw_id or 0)


async def patients(db, clock, n: int) -> list[tuple[str, int, int]]:
    """n accounts with one verified patient each: (token, account id, patient id)."""
    out = []
    for _ in range(n):
        account_id, token = await make_account(db, clock.now())
        out.append((token, account_id, await make_patient(db, clock.now(), account_id)))
    return out


async def enter(client, world: DrawWorld, token: str, patient_id: int, *, opt_in: bool = False):
    return await client.post(f"/api/v1/schedules/{world.schedule_id}/draw/entries",
                             json={"patient_id": patient_id, "waitlist_opt_in": opt_in}, headers=auth(token))


async def run_draw(db, clock, world: DrawWorld) -> str:
    clock.set(max(clock.now(), (await draw_row(db, world)).result_at))
    return await allocation.run(db, world.draw_id, now_fn=clock.now)


async def draw_row(db, world: DrawWorld) -> Draw:
    async with db.read() as s:
        return await s.get(Draw, world.draw_id)


async def entries(db, world: DrawWorld) -> list[DrawEntry]:
    async with db.read() as s:
        return list(await s.scalars(select(DrawEntry).where(DrawEntry.draw_id == world.draw_id)
                                    .order_by(DrawEntry.rank, DrawEntry.id)))


async def bookings_of(db, schedule_id: int) -> list[Booking]:
    async with db.read() as s:
        return list(await s.scalars(select(Booking).where(Booking.schedule_id == schedule_id).order_by(Booking.id)))


def verify(record: dict, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the standalone verifier in a fresh interpreter, isolated (-I: guahao is not importable
    from the repository there unless the verifier imported it by path, which it must not)."""
    path = tmp_path / f"audit-{next(_ids)}.json"
    path.write_text(json.dumps(record), encoding="utf-8")
    return subprocess.run([sys.executable, "-I", str(VERIFIER), str(path), *extra], capture_output=True, text=True,
                          timeout=60)


async def many_patients(db, clock, n: int) -> list[tuple[str, int, int]]:
    """Like `patients`, for thousands: one transaction per 200 (token, account id, patient id)."""
    from guahao.accounts import service as accounts_service
    from guahao.accounts.models import Account
    from guahao.core.crypto import lookup_hash
    from guahao.patients.models import Patient, Person
    from tests.booking_builders import make_id_number
    from tests.builders import TTL

    now, out = clock.now(), []
    for start in range(0, n, 200):
        async with db.begin() as s:
            for _i in range(start, min(n, start + 200)):
                phone = f"+86137{next(_ids) + 10_000_000:08d}"
                account = Account(phone=phone, phone_hash=lookup_hash("phone", phone), created_at=now)
                birth = dt.date(1950, 1, 1) + dt.timedelta(days=next(_ids))  # ID numbers unique across thousands
                id_number = make_id_number(birth)
                person = Person(identity_hash=lookup_hash("identity", f"resident_id:{id_number}"), created_at=now)
                s.add_all([account, person])
                await s.flush()
                token = await accounts_service.do_create_session(s, now=now, ttl=TTL, account_id=account.id)
                patient = Patient(account_id=account.id, person_id=person.id, relationship="self", name="李四",
                                  id_type="resident_id", id_number=id_number, birth_date=birth, sex="M",
                                  phone=phone, verification="verified", verified_at=now, created_at=now, updated_at=now)
                s.add(patient)
                await s.flush()
                out.append((token, account.id, patient.id))
    return out
