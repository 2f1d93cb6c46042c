"""A realtime hospital on a real HIS simulator process (tests/his_support.py): our schedule and
slot mirror one simulator session and band, the connection sells the simulator's `shared`
pool (6 numbers per band, also sold by the platform `partner`)."""
from __future__ import annotations

from sqlalchemy import select, update

from guahao.accounts.sms import RecordingSms
from guahao.booking import actions
from guahao.booking.models import Booking
from guahao.catalog.models import Hospital
from guahao.jobs import handlers
from guahao.jobs.runner import drain
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import JobContext
from guahao.scheduling.models import Schedule, Slot
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.his_records_support import DAY, connect, operator_headers, sim_client

SESSION = f"S-{DAY.isoformat()}-D001-am"
BAND = f"{SESSION}-1"
POOL_SIZE = 6  # the simulator seed's `shared` pool per band


async def realtime_world(client, db, clock, sim, *, seats: int = 8, fee: int = 500, patients: int = 3,
                         pool: str = "shared", platform: str = "guahao", **connection) -> dict:
    """A realtime hospital whose one slot mirrors BAND at the simulator (seeded from DAY), with
    `seats` local seats, one account and `patients` verified patients (different people)."""
    sim.seed(DAY, days=2)
    now = clock.now()
    hid = await make_hospital(db, now)
    await connect(client, await operator_headers(db, now), hid, sim, pool=pool, platform=platform, **connection)
    dep = await make_department(db, hid, name="内科")
    doc = await make_doctor(db, hid, dep)
    schedule, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY,
                                          capacity=seats, registration_fee=fee, consultation_fee=0)
    async with db.begin() as s:
        await s.execute(update(Hospital).where(Hospital.id == hid).values(his_mode="realtime"))
        await s.execute(update(Schedule).where(Schedule.id == schedule).values(his_session_id=SESSION))
        await s.execute(update(Slot).where(Slot.id == slots[0]).values(his_band_id=BAND))
    account_id, token = await make_account(db, now)
    people = [await make_patient(db, now, account_id, name=f"患者{n}") for n in range(patients)]
    return {"hospital": hid, "schedule": schedule, "slot": slots[0], "account": account_id, "token": token,
            "patients": people}


async def his_order(sim, booking_id: int, platform: str = "guahao"):
    """The order at the HIS for one of our bookings, or None."""
    from guahao.his.client import HisRefused, order_id_for

    his = sim_client(sim)
    try:
        return await his.get_order(order_id_for(booking_id))
    except HisRefused as exc:
        assert exc.code == "ORDER_NOT_FOUND"
        return None
    finally:
        await his.aclose()


async def remaining_at_his(sim, pool: str = "shared") -> int:
    his = sim_client(sim)
    try:
        sessions = await his.availability(DAY, DAY)
    finally:
        await his.aclose()
    band = next(b for s in sessions for b in s.bands if b.band_id == BAND)
    return next(p.remaining for p in band.pools if p.pool == pool)


async def bookings(db, hospital_id: int) -> list[Booking]:
    async with db.read() as s:
        return list(await s.scalars(select(Booking).where(Booking.hospital_id == hospital_id).order_by(Booking.id)))


async def topics(db) -> list[str]:
    async with db.read() as s:
        return list(await s.scalars(select(OutboxMessage.topic).order_by(OutboxMessage.id)))


async def run_jobs(db, clock, settings) -> int:
    handlers.load(settings)
    return await drain(JobContext(db=db, clock=clock, settings=settings, providers={"sms": RecordingSms()}))


async def sweep(db, clock) -> int:
    async with db.begin() as s:
        return await actions.do_expire_due(s, now=clock.now())
