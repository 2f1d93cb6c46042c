"""A synced hospital on a real HIS simulator process (tests/his_support.py): catalogue codes
matching the simulator's seed, the operator's connection, the sync, holds and payments, and
a look into the simulator's own SQLite file (the HIS's books, for "exactly once" checks)."""
from __future__ import annotations

import datetime as dt
import sqlite3
import uuid

from sqlalchemy import select, update

from guahao.accounts.sms import RecordingSms
from guahao.booking import actions as booking_actions
from guahao.booking.models import Booking
from guahao.catalog.models import Doctor, Hospital
from guahao.his import sync
from guahao.jobs import handlers
from guahao.jobs.runner import drain
from guahao.outbox.registry import JobContext
from guahao.scheduling.models import Slot, SlotPosition
from tests.booking_builders import make_patient
from tests.builders import auth, make_account, make_department, make_hospital
from tests.his_records_support import connect, operator_headers

DAY = dt.date(2026, 11, 21)  # two days after the test clock
SESSION = f"S-{DAY.isoformat()}-D001-am"  # 王医生 (D001, 内科) on DAY morning: three bands
BAND = f"{SESSION}-1"  # pools at the simulator: onsite 4, shared 6, guahao 2


async def synced_world(client, db, clock, sim, *, days: int = 1, **rules) -> dict:
    """A synced hospital whose departments and doctors carry the simulator seed's codes,
    connected to `sim` (pool `guahao`), the simulator seeded from DAY, and one sync run."""
    now = clock.now()
    sim.seed(DAY, days)
    hid = await make_hospital(db, now, name="海淀协和", **rules)
    nei = await make_department(db, hid, name="普通内科", his_code="NEI")
    erk = await make_department(db, hid, name="儿科", his_code="ERK")
    doctors = {}
    async with db.begin() as s:
        for code, dep, name, title, level in (("D001", nei, "王医生", "chief", "expert"),
                                              ("D002", nei, "李医生", "attending", "general"),
                                              ("D003", erk, "张医生", "associate_chief", "expert")):
            doctor = Doctor(hospital_id=hid, department_id=dep, name=name, title=title, registration_level=level,
                            his_code=code)
            s.add(doctor)
            await s.flush()
            doctors[code] = doctor.id
        await s.execute(update(Hospital).where(Hospital.id == hid).values(his_mode="synced"))
    operator = await operator_headers(db, now)
    await connect(client, operator, hid, sim)
    report = await sync.sync_hospital(db, hid, now=now)
    assert report.refused == [] and report.created > 0, report
    return {"hospital": hid, "doctors": doctors, "operator": operator, "sync": report}


async def platform_slot(db, band_id: str) -> Slot:
    async with db.read() as s:
        return await s.scalar(select(Slot).where(Slot.his_band_id == band_id, Slot.pool == "platform"))


async def seat_count(db, slot_id: int) -> int:
    async with db.read() as s:
        return len(list(await s.scalars(select(SlotPosition.id).where(SlotPosition.slot_id == slot_id))))


async def booking(db, booking_id: int) -> Booking:
    async with db.read() as s:
        return await s.get(Booking, booking_id)


async def held(db, clock, slot_id: int) -> tuple[int, str, int]:
    """A new account and patient holding a seat of `slot_id`: (booking id, token, account id)."""
    account_id, token = await make_account(db, clock.now())
    patient = await make_patient(db, clock.now(), account_id)
    async with db.begin() as s:
        b = await booking_actions.do_hold(s, account_id=account_id, patient_id=patient, slot_id=slot_id,
                                          now=clock.now())
        return b.id, token, account_id


async def confirmed(db, clock, slot_id: int) -> tuple[int, str, int]:
    """A held booking, paid (the payment layer's confirmation), so its write-back is queued."""
    booking_id, token, account_id = await held(db, clock, slot_id)
    async with db.begin() as s:
        await booking_actions.do_confirm(s, booking_id, now=clock.now())
    return booking_id, token, account_id


def job_context(app, settings, clock) -> JobContext:
    handlers.load()  # every feature's handlers, as a worker has them
    # a fresh recording SMS gateway: `ctx.providers["sms"].sent` is what the workers sent
    return JobContext(db=app.state.db, clock=clock, settings=settings,
                      providers={**{k: v for k, v in app.state.providers.items() if k != "notifications"},
                                 "sms": RecordingSms()})


async def run_jobs(ctx: JobContext, clock, *, later: dt.timedelta = dt.timedelta(0)) -> int:
    """Let time pass (retries become due), then process every due message as a worker would."""
    if later:
        clock.advance(seconds=later.total_seconds())
    return await drain(ctx)


def his_rows(sim, sql: str, *args) -> list[tuple]:
    """Read the simulator's own database (the HIS's books) directly."""
    db = sqlite3.connect(str(sim.db_path), timeout=30)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def his_orders(sim) -> list[tuple]:
    return his_rows(sim, "SELECT order_id, state, visit_no, cancel_reason FROM orders WHERE platform = 'guahao'"
                         " ORDER BY order_id")


def visit_numbers_given(sim, session_id: str = SESSION) -> int:
    """How many visit numbers the HIS has handed out in a session (a confirmation done twice
    would have taken two)."""
    return his_rows(sim, "SELECT next_visit_no FROM sessions WHERE id = ?", session_id)[0][0] - 1


def cancel_headers(token: str) -> dict:
    return {**auth(token), "Idempotency-Key": uuid.uuid4().hex}
