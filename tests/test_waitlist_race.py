"""候补 under concurrency: exactly once, no overtaking, no leak to open booking, no deadlock.
Many simultaneous clients (HTTP and job handlers, each on its own connection) and several
promoter processes on one database; every test ends with the W1-W8 and I1-I4 audits."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
import secrets
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from guahao.booking import actions as booking_actions
from guahao.booking import invariants as booking_invariants
from guahao.booking.models import Booking
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import HANDLERS, JobContext
from guahao.waitlist import promote
from tests.booking_builders import make_id_number, make_schedule
from tests.builders import auth, make_department, make_doctor
from tests.conftest import LOG_FILE, TEST_DATA_KEY, TEST_INDEX_KEY
from tests.waitlist_support import (
    DAY,
    booking,
    check,
    entries,
    hold,
    join,
    make_world,
    new_patient,
    outbox_topics,
    run_jobs,
    sell_out,
    states,
    waiters,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ctx(app, settings, clock) -> JobContext:
    return JobContext(db=app.state.db, clock=clock, settings=settings, providers=app.state.providers)


async def _audit(db, clock) -> None:
    await check(db, clock)
    async with db.read() as s:
        assert await booking_invariants.check(s, now=clock.now()) == []


async def _pending(db, topic: str) -> list[dict]:
    async with db.read() as s:
        return list(await s.scalars(select(OutboxMessage.payload).where(OutboxMessage.topic == topic,
                                                                        OutboxMessage.state == "pending")))


async def test_20_concurrent_cancels_with_50_waiting_give_20_offers_to_positions_1_to_20(client, db, clock, ctx):
    world = await make_world(db, clock, capacity=20)
    sold = await sell_out(db, clock, world)
    await waiters(db, clock, world, 50)

    answers = await asyncio.gather(*(client.post(f"/api/v1/bookings/{b}/cancel", headers=auth(tok))
                                     for _a, tok, _p, b in sold))
    assert {r.status_code for r in answers} == {200}
    freed = await _pending(db, "seats.freed")
    assert len(freed) == 20
    # every freed-seat message delivered at once (and each twice: at-least-once delivery)
    await asyncio.gather(*(HANDLERS["seats.freed"](ctx, p) for p in freed + freed))

    rows = await entries(db, world["schedule"])
    assert [e.state for e in rows] == ["offered"] * 20 + ["waiting"] * 30
    offers = [e.offer_booking_id for e in rows[:20]]
    assert len(set(offers)) == 20
    assert sorted(m["entry_id"] for m in await outbox_topics(db, "notify.waitlist_offer")) == [e.id for e in rows[:20]]
    async with db.read() as s:
        seats_of = Counter((await s.scalars(select(Booking.visit_no).where(Booking.id.in_(offers)))).all())
    assert len(seats_of) == 20
    await _audit(db, clock)


def _proc_env(settings, **extra) -> dict:
    return {**os.environ, "GUAHAO_ENV": "test", "GUAHAO_DATABASE_URL": settings.database_url,
            "GUAHAO_DATA_KEY": TEST_DATA_KEY, "GUAHAO_INDEX_KEY": TEST_INDEX_KEY,
            "GUAHAO_SECRET_KEY": secrets.token_urlsafe(32), "GUAHAO_LOG_FILE": str(LOG_FILE),
            "GUAHAO_SMS_PROVIDER": "recording",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]), **extra}


async def test_a_promoter_stampede_from_four_processes_equals_a_serial_run(db, clock, settings, tmp_path):
    world = await make_world(db, clock, capacity=5)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 10)
    env = _proc_env(settings)
    procs = [subprocess.Popen([sys.executable, "-m", "tests.waitlist_promoter_proc", str(world["schedule"]),
                               clock.now().isoformat(), "40"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(4)]
    try:
        await asyncio.sleep(1.0)  # let them start and spin on the empty queue
        for account, _tok, _p, paid in sold:  # seats free one by one while they run
            async with db.begin() as s:
                await booking_actions.do_cancel(s, account_id=account, booking_id=paid, now=clock.now())
            await asyncio.sleep(0.05)
        outputs = [await asyncio.to_thread(p.communicate, timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1].decode()[-2000:] for o in outputs]
    async with db.begin() as s:  # a last run catches a seat freed after the processes stopped
        made_after = len(await promote.do_promote(s, schedule_id=world["schedule"], now=clock.now()))
    made = sum(int(o[0].decode().strip().splitlines()[-1]) for o in outputs) + made_after
    assert made == 5  # exactly once

    rows = await entries(db, world["schedule"])
    assert [e.state for e in rows] == ["offered"] * 5 + ["waiting"] * 5
    assert [e.id for e in rows] == [q[3] for q in queue]
    offer_ids = [e.offer_booking_id for e in rows[:5]]
    assert offer_ids == sorted(offer_ids)  # offers were made in queue order, as a serial run makes them
    assert len(await outbox_topics(db, "notify.waitlist_offer")) == 5
    await _audit(db, clock)


async def test_a_lapse_with_200_open_holds_hammering_gives_the_seat_to_the_head(client, db, clock, ctx):
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world, paid=False)  # one unpaid hold, 30 minutes... 15 by the rules
    queue = await waiters(db, clock, world, 3)
    lapsed = await booking(db, sold[0][3])
    clock.set(lapsed.hold_expires_at + dt.timedelta(seconds=1))  # the hold lapsed; no job has run yet

    hammer = []
    for _ in range(200):
        account, token, patient = await new_patient(db, clock)
        hammer.append((token, patient))

    async def open_hold(token, patient):
        return await client.post("/api/v1/bookings", json={"slot_id": world["slots"][0], "patient_id": patient},
                                 headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})

    async def promoter():
        await asyncio.sleep(0.01)
        return await run_jobs(ctx)

    *answers, ran = await asyncio.gather(*(open_hold(t, p) for t, p in hammer), promoter())
    await run_jobs(ctx)
    codes = Counter(r.json().get("code", r.status_code) for r in answers)
    assert codes == {"slot_sold_out": 200}, codes
    rows = await entries(db, world["schedule"])
    assert [e.state for e in rows] == ["offered", "waiting", "waiting"]
    offer = await booking(db, rows[0].offer_booking_id)
    assert (offer.patient_id, offer.state, offer.visit_no) == (queue[0][2], "held", 1)
    assert (await booking(db, lapsed.id)).state == "expired"
    del ran
    await _audit(db, clock)


async def test_the_same_person_joining_from_two_accounts_10_times_at_once_is_one_entry(client, db, clock):
    world = await make_world(db, clock, capacity=1)
    await sell_out(db, clock, world)
    id_number = make_id_number()
    accounts = [await new_patient(db, clock, id_number=id_number) for _ in range(2)]

    answers = await asyncio.gather(*(
        client.post("/api/v1/waitlist", json={"schedule_id": world["schedule"], "patient_id": accounts[i % 2][2]},
                    headers=auth(accounts[i % 2][1])) for i in range(20)))

    codes = Counter(r.json().get("code", r.status_code) for r in answers)
    assert codes == {201: 1, "waitlist_duplicate": 19}, codes
    assert await states(db, world["schedule"]) == ["waiting"]
    await _audit(db, clock)


async def test_promoter_and_a_hold_of_the_head_in_a_tight_loop_never_deadlock(db, clock, ctx):
    """Lock order: the promoter takes schedule → person (inside the offer's hold); a hold of
    the same person elsewhere takes its own schedule → person. 30 rounds, each racing the
    promoter of S1 against the head's own hold on S2 and an open hold on S1."""
    world = await make_world(db, clock, capacity=1)
    other_dep = await make_department(db, world["hospital"], name="外科")
    for i in range(30):
        doc = await make_doctor(db, world["hospital"], world["department"], name=f"甲{i}")
        s1, s1_slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"],
                                           department_id=world["department"], doctor_id=doc, day=DAY, capacity=1)
        doc2 = await make_doctor(db, world["hospital"], other_dep, name=f"乙{i}")
        _s2, s2_slots = await make_schedule(db, clock.now(), hospital_id=world["hospital"], department_id=other_dep,
                                            doctor_id=doc2, day=DAY, capacity=1)
        qa, _qt, qp = await new_patient(db, clock)
        taken = await hold(db, clock, qa, qp, s1_slots[0])
        pa, _pt, pp = await new_patient(db, clock)
        await join(db, clock, pa, pp, s1)
        async with db.begin() as s:
            await booking_actions.do_cancel(s, account_id=qa, booking_id=taken, now=clock.now())

        async def promote_s1(s1=s1):
            async with db.begin() as s:
                return len(await promote.do_promote(s, schedule_id=s1, now=clock.now()))

        async def head_holds_elsewhere(pa=pa, pp=pp, slot=s2_slots[0]):
            return await hold(db, clock, pa, pp, slot)

        async def open_hold_on_s1(slot=s1_slots[0]):
            a, _t, p = await new_patient(db, clock)
            try:
                return await hold(db, clock, a, p, slot)
            except Exception as exc:  # sold out: the seat is the queue's
                return type(exc).__name__

        offered, _elsewhere, opened = await asyncio.wait_for(
            asyncio.gather(promote_s1(), head_holds_elsewhere(), open_hold_on_s1()), timeout=20)
        assert offered == 1
        assert opened == "SlotSoldOut"
    await _audit(db, clock)


async def test_a_promoter_killed_mid_offer_leaves_nothing_and_the_rerun_offers_once(db, clock, settings, ctx):
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, 3)
    async with db.begin() as s:
        await booking_actions.do_cancel(s, account_id=sold[0][0], booking_id=sold[0][3], now=clock.now())
    proc = subprocess.Popen([sys.executable, "-m", "tests.waitlist_promoter_proc", str(world["schedule"]),
                             clock.now().isoformat(), "1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_proc_env(settings, WAITLIST_PAUSE_BEFORE_COMMIT="1"))
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
        assert line.decode().strip() == "offered 1", line or proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)  # the offer's hold, entry update and SMS row were not committed
        await asyncio.to_thread(proc.wait, 30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert await states(db, world["schedule"]) == ["waiting"] * 3
    async with db.read() as s:
        assert await s.scalar(select(Booking.id).where(Booking.schedule_id == world["schedule"],
                                                       Booking.state == "held")) is None
    assert await outbox_topics(db, "notify.waitlist_offer") == []
    await run_jobs(ctx)  # the seats.freed message is still there: the worker's job runs again
    await run_jobs(ctx)
    rows = await entries(db, world["schedule"])
    assert [e.state for e in rows] == ["offered", "waiting", "waiting"]
    assert rows[0].id == queue[0][3]
    assert len(await outbox_topics(db, "notify.waitlist_offer")) == 1
    await _audit(db, clock)
