"""Business counters at their call sites, counted only when the transaction commits, and the
gauges /metrics reads from the database at scrape time."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid

import pytest
from prometheus_client import REGISTRY

from guahao.core import metrics
from guahao.outbox import service as outbox
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

DAY = dt.date(2026, 11, 21)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def world(db, clock):
    now = clock.now()
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid, name="心内科")
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc, day=DAY, capacity=1)
    _, free = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None,
                                  day=DAY + dt.timedelta(days=1), registration_fee=0, consultation_fee=0)
    account_id, token = await make_account(db, now)
    return {"slot": slots[0], "free_slot": free[0], "token": token,
            "patients": [await make_patient(db, now, account_id) for _ in range(2)]}


async def _hold(client, world, slot, patient):
    return await client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                             headers={**auth(world["token"]), "Idempotency-Key": uuid.uuid4().hex})


async def test_hold_outcomes_gate_answers_and_confirmations_are_counted(client, world):
    created, sold_out = value("guahao_holds_total", outcome="created"), value("guahao_holds_total",
                                                                              outcome="slot_sold_out")
    passed = value("guahao_gate_answers_total", answer="pass")
    confirmed = value("guahao_bookings_confirmed_total")
    r = await _hold(client, world, world["slot"], world["patients"][0])
    assert r.status_code == 201, r.text
    r = await _hold(client, world, world["slot"], world["patients"][1])  # one seat only
    assert r.json()["code"] == "slot_sold_out"
    r = await _hold(client, world, world["free_slot"], world["patients"][1])  # free: confirmed at once
    assert r.status_code == 201 and r.json()["state"] == "confirmed", r.text
    assert value("guahao_holds_total", outcome="created") == created + 2
    assert value("guahao_holds_total", outcome="slot_sold_out") == sold_out + 1
    assert value("guahao_gate_answers_total", answer="pass") >= passed + 3
    assert value("guahao_bookings_confirmed_total") == confirmed + 1


async def test_counted_only_when_the_transaction_commits(db):
    before = value("guahao_holds_expired_total")
    with pytest.raises(RuntimeError):
        async with db.begin() as session:
            metrics.count_on_commit(session, metrics.EXPIRIES)
            raise RuntimeError("a later refusal rolls the expiry back")
    assert value("guahao_holds_expired_total") == before
    async with db.begin() as session:
        metrics.count_on_commit(session, metrics.EXPIRIES)
        assert value("guahao_holds_expired_total") == before  # not before the commit
    assert value("guahao_holds_expired_total") == before + 1


def _sample(text: str, name: str) -> float:
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


async def test_scrape_reads_outbox_lag_and_pending_refunds_from_the_database(client, db, clock):
    now = clock.now()
    async with db.begin() as session:
        await outbox.enqueue(session, topic="noop", dedupe_key=f"m-{uuid.uuid4().hex}", payload={}, now=now,
                             available_at=now - dt.timedelta(seconds=90))
        await outbox.enqueue(session, topic="noop", dedupe_key=f"m-{uuid.uuid4().hex}", payload={}, now=now,
                             available_at=now + dt.timedelta(seconds=30))  # not due: no lag
    text = (await client.get("/metrics")).text
    assert _sample(text, metrics.OUTBOX_LAG) == 90
    assert _sample(text, metrics.REFUNDS_PENDING) == 0
    assert _sample(text, "guahao_metrics_database_up") == 1
    for name in ("guahao_holds_total", "guahao_sms_total", "guahao_refunds_total", "guahao_jobs_dead_total",
                 "guahao_his_calls_total", "guahao_gate_answers_total"):
        assert f"# TYPE {name} counter" in text


def test_live_gauges_of_dead_processes_are_dropped(tmp_path):
    code = ("from guahao.jobs import metrics; metrics.RUNNING.inc(3); import os; print(os.getpid())")
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    pid = int(subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": ":".join(sys.path)},
                             capture_output=True, text=True, check=True).stdout)
    assert list(tmp_path.glob(f"gauge_livesum_{pid}.db"))
    assert metrics.reap_dead(str(tmp_path)) == [pid]
    assert not list(tmp_path.glob(f"gauge_livesum_{pid}.db"))


class _FlakyNotifier:
    """Fails its first send (a gateway timeout), then accepts."""

    def __init__(self) -> None:
        self.calls = 0

    async def send(self, sms) -> None:
        self.calls += 1
        if self.calls == 1:
            raise TimeoutError("gateway timed out")


async def test_sms_sent_and_failed_are_counted(app, db, clock, settings):
    from guahao.notifications import delivery
    from guahao.outbox.registry import JobContext, RetryLater

    account_id, _ = await make_account(db, clock.now())
    ctx = JobContext(db=db, clock=clock, settings=settings, providers={"notifications": _FlakyNotifier()})
    message = delivery.Outgoing(dedupe_key=f"test:{uuid.uuid4().hex}", template="booking_confirmed",
                                phone="+8613900000000", locale="zh-CN", params={}, account_id=account_id)
    sent, failed = value("guahao_sms_total", result="sent"), value("guahao_sms_total", result="failed")
    with pytest.raises(RetryLater):
        await delivery.deliver(ctx, message)
    assert value("guahao_sms_total", result="failed") == failed + 1
    assert await delivery.deliver(ctx, message)
    assert value("guahao_sms_total", result="sent") == sent + 1
    assert not await delivery.deliver(ctx, message)  # sent once: not counted again
    assert value("guahao_sms_total", result="sent") == sent + 1
