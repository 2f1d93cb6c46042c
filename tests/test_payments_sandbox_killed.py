"""The payment provider's process SIGKILLed in the middle of payments (issue 12, 服务器故障):
patients have paid at the sandbox (`guahao paysim`, a real process with its own ledger file),
and it dies before its notifications reach us. While it is down, /readyz stays ready (holds,
pages and the back office do not need it), starting a payment is a clear 503
`payments_unavailable`, holds keep being taken, and reconciliation finds the provider
unreachable and changes nothing. It comes back on the same ledger: its notifications arrive
late, reconciliation asks about the ones it never sent, and every booking ends consistent:
paid and confirmed, or expired and refunded exactly once; never paid and lapsed without a
refund. Every 2xx answer given during the fault is in the database, and I1-I5 hold."""
from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from guahao.booking import jobs as booking_jobs  # noqa: F401  (registers the sweeper)
from guahao.ops.invariants import check_all
from guahao.outbox.registry import HANDLERS
from tests.builders import auth
from tests.payments_support import (
    FEE,
    assert_money_invariant,
    get_booking,
    latest_payment,
    make_world,
    new_patient,
    run_jobs,
    start_payment,
)
from tests.paysim_fixture import PAYSIM_KEY, Sandbox, free_port, job_ctx, our_port, serving, settings  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


class PaysimProcess:
    """One private `guahao paysim` on a fixed port and ledger file, so that it can be killed
    and started again as the same provider (the session's shared sandbox must not be)."""

    def __init__(self, port: int, ledger: str) -> None:
        self.port, self.ledger = port, ledger
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        code = (f"from guahao.payments.paysim import main; main(host='127.0.0.1', port={self.port}, "
                f"db_path={self.ledger!r}, key={PAYSIM_KEY!r}, retry_scale=0.01)")
        self.proc = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("paysim did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def provider(tmp_path):
    proc = PaysimProcess(free_port(), str(tmp_path / "paysim.db"))
    proc.start()
    box = Sandbox(proc.url)
    yield proc, box
    await box.http.aclose()
    proc.stop()


async def _hold(http: httpx.AsyncClient, token: str, patient: int, slot: int) -> httpx.Response:
    return await http.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                           headers={**auth(token), "Idempotency-Key": uuid.uuid4().hex})


async def test_a_killed_payment_provider_leaves_every_booking_paid_and_confirmed_or_refunded(
        app, db, clock, provider, our_port, job_ctx):
    paysim, box = provider
    world = await make_world(db, clock, capacity=10)
    acknowledged: list[int] = []  # ids of every 2xx hold answer
    async with serving(app, box, our_port), httpx.AsyncClient(base_url=f"http://127.0.0.1:{our_port}",
                                                              timeout=30) as http:
        async def book() -> tuple[int, str]:
            _, token, patient = await new_patient(db, clock)
            answer = await _hold(http, token, patient, world["slot"])
            assert answer.status_code == 201, answer.text
            acknowledged.append(answer.json()["id"])
            return answer.json()["id"], token

        # two holds taken early (their holds end during the outage), four later
        early = [await book() for _ in range(2)]
        clock.advance(minutes=10)
        later = [await book() for _ in range(4)]
        trade_no = {}
        for booking_id, token in early + later:
            started = await start_payment(http, token, booking_id)
            assert started.status_code == 201, started.text
            trade_no[booking_id] = started.json()["pay_url"].rsplit("/", 1)[1]
        (late_notified, late_silent), (silent, *notified) = [b for b, _ in early], [b for b, _ in later]

        # the patients pay; two notifications are lost for good, the others are still queued
        # at the provider when it is killed
        await box.switches(drop_notifications=True)
        for b in (late_silent, silent):
            assert (await box.pay(trade_no[b])).status_code == 200
        await box.switches(drop_notifications=False, delay_seconds=5)
        for b in (late_notified, *notified):
            assert (await box.pay(trade_no[b])).status_code == 200
        paysim.kill()

        # the outage: the early holds end
        clock.advance(minutes=6)
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        newcomer, token = await book()  # holds keep working
        refused = await start_payment(http, token, newcomer)
        assert refused.status_code == 503 and refused.json()["code"] == "payments_unavailable"
        assert refused.headers["content-type"].startswith("application/problem+json")
        await HANDLERS["payments.reconcile"](job_ctx, {})  # the provider is unreachable: nothing changes
        for b in trade_no:
            payment = await latest_payment(db, b)
            assert payment.state == "created", (b, payment.state)
        assert await check_all(db, now=clock.now()) == []

        # the provider comes back on its ledger and delivers what it had queued
        paysim.start()
        await box.wait_delivered([trade_no[b] for b in (late_notified, *notified)], timeout=60)
        # reconciliation asks about open payments whose hold ends within two minutes: the
        # lost notification of a running hold is found before that hold is over
        clock.advance(minutes=8)
        await HANDLERS["payments.reconcile"](job_ctx, {})  # asks about the two it never notified
        await run_jobs(job_ctx, "payment.refund")
        await HANDLERS["booking.sweep_expired_holds"](job_ctx, {})  # records the lapsed holds as expired
        assert (await http.get("/readyz")).status_code == 200

    for b in (silent, *notified):
        booking, payment = await get_booking(db, b), await latest_payment(db, b)
        assert (booking.state, payment.state, payment.settled_as) == ("confirmed", "paid", "booking"), b
        assert await box.refunds(trade_no[b]) == []
    for b in (late_notified, late_silent):
        booking, payment = await get_booking(db, b), await latest_payment(db, b)
        assert (booking.state, payment.state, payment.settled_as) == ("expired", "paid", "refund"), b
        refunds = await box.refunds(trade_no[b])
        assert [r["amount"] for r in refunds] == [FEE], b  # refunded exactly once
    assert (await get_booking(db, newcomer)).state == "held"
    for b in acknowledged:  # every 2xx answer given before, during and after the fault is stored
        assert await get_booking(db, b) is not None
    assert await check_all(db, now=clock.now()) == []
    await assert_money_invariant(db)
