"""A real refund killed in its crash window: a `guahao worker` process asks the sandbox
provider (a real process) to refund, the provider accepts, and the worker is SIGKILLed before
our database records it. Another worker takes the job over after its lease and must end with
exactly one refund at the provider and in our books (I5): the refund number is fixed per
payment and the provider is idempotent on it."""
from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from guahao.outbox.models import OutboxMessage
from guahao.payments.models import Refund
from guahao.payments.paysim_client import SandboxPayments
from tests.payments_support import (
    assert_money_invariant,
    count_rows,
    hold,
    latest_payment,
    make_world,
    new_patient,
    start_payment,
)
from tests.paysim_fixture import PAYSIM_KEY, paysim, sandbox  # noqa: F401
from tests.test_jobs_processes import Workers

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def workers(db, database_url, tmp_path, sandbox):
    w = Workers(database_url, tmp_path)
    w.env.update({"GUAHAO_PAYMENT_PROVIDER": "paysim", "GUAHAO_PAYSIM_URL": sandbox.url,
                  "GUAHAO_PAYSIM_KEY": PAYSIM_KEY, "GUAHAO_JOB_PLUGINS": "tests.refund_crash_plugin",
                  "REFUNDCRASH_DIR": str(tmp_path)})
    yield w
    w.kill_all()


@pytest.fixture
async def paying(app, sandbox):
    """Our app paying through the sandbox process (no HTTP server: the test posts the
    provider's notification itself)."""
    port = SandboxPayments(sandbox.url, PAYSIM_KEY)
    app.state.providers["payments"] = port
    yield port
    await port.aclose()


async def _late_payment(client, db, clock, sandbox, port) -> str:
    """A payment that reaches us after its hold ended: its refund is queued (outbox)."""
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    clock.advance(minutes=16)
    await sandbox.switches(drop_notifications=True)
    await sandbox.pay(no)
    [note] = await sandbox.wait_delivered([no], states=("dropped",))
    headers, body = await sandbox.signed(note["id"])
    assert (await client.post("/api/v1/payments/notify/paysim", content=body, headers=headers)).status_code == 200
    payment = await latest_payment(db, booking_id)
    assert (payment.state, payment.settled_as) == ("paid", "refund")
    return no


async def _refund(db) -> Refund:
    async with db.read() as s:
        return await s.scalar(select(Refund))


async def _wait_file(path: Path, workers: Workers, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().endswith("\n"):
        if time.monotonic() > deadline:
            pytest.fail(f"the worker never reached the provider:\n{workers.output()}")
        for proc in workers.procs:
            if proc.poll() is not None:
                pytest.fail(f"the worker exited with {proc.returncode}:\n{workers.output()}")
        await asyncio.sleep(0.05)
    return path.read_text()


async def test_a_refund_killed_after_the_provider_accepted_it_is_recorded_once_by_the_next_worker(
        client, db, clock, sandbox, paying, workers, tmp_path):
    no = await _late_payment(client, db, clock, sandbox, paying)
    await assert_money_invariant(db)  # refund pending (queued) from the notification's commit on

    workers.env["REFUNDCRASH_STALL"] = "1"
    first = workers.start(lease=3)
    out_refund_no, provider_refund_id = (await _wait_file(tmp_path / "provider_refunded", workers, 60)).split()
    # the crash window: the provider has refunded, our books still say pending
    at_provider = await sandbox.refunds(no)
    assert [(r["out_refund_no"], r["refund_id"]) for r in at_provider] == [(out_refund_no, provider_refund_id)]
    refund = await _refund(db)
    assert (refund.state, refund.out_refund_no, refund.provider_refund_id) == ("pending", out_refund_no, None)
    assert await workers.stop(first, signal.SIGKILL) == -signal.SIGKILL

    workers.env["REFUNDCRASH_STALL"] = "0"
    workers.start(lease=3)

    async def recorded() -> bool:
        return (await _refund(db)).state == "succeeded"

    await workers.until(recorded, timeout=90, what="the refund to be recorded by the second worker")
    refund = await _refund(db)
    at_provider = await sandbox.refunds(no)
    assert len(at_provider) == 1 and at_provider[0]["amount"] == refund.amount
    assert refund.provider_refund_id == provider_refund_id  # the provider answered with the same refund
    assert await count_rows(db, Refund) == 1
    async with db.read() as s:
        states = list(await s.scalars(select(OutboxMessage.state).where(OutboxMessage.topic == "payment.refund")))
    assert states in (["done"], ["in_progress"])  # recorded; the job row itself is closed right after
    await assert_money_invariant(db)


async def test_the_provider_refunds_at_most_once_per_refund_number_under_concurrent_retries(
        client, db, clock, sandbox, paying):
    no = await _late_payment(client, db, clock, sandbox, paying)
    refund_no = f"{no}R"
    answers = await asyncio.gather(*(paying.refund(out_trade_no=no, out_refund_no=refund_no, amount=1500)
                                     for _ in range(10)))
    assert len({a.refund_id for a in answers}) == 1
    assert len(await sandbox.refunds(no)) == 1
    # a second refund number for the same money is refused: nothing is left to refund
    with pytest.raises(Exception, match="NOT_ENOUGH"):
        await paying.refund(out_trade_no=no, out_refund_no=f"{no}X", amount=1500)
    assert len(await sandbox.refunds(no)) == 1
