"""Notifications we must refuse, sent over real HTTP to our app: forged (another key),
tampered (a genuine signature over a changed body), stale replays, unsigned, and a genuine
notification whose amount is not ours. Nothing changes; the genuine one still works."""
from __future__ import annotations

import asyncio
import datetime as dt
import json

import httpx
import pytest
from sqlalchemy import select

from guahao.booking.models import BookingEvent
from guahao.payments import wire
from guahao.payments.models import PaymentNotification, Refund
from tests.builders import auth, make_staff
from tests.payments_support import (
    FEE,
    assert_money_invariant,
    count_rows,
    get_booking,
    hold,
    latest_payment,
    make_world,
    new_patient,
    run_jobs,
    start_payment,
)
from tests.paysim_fixture import *  # noqa: F403
from tests.paysim_fixture import PAYSIM_KEY

pytestmark = pytest.mark.timeout(60)





async def test_forged_tampered_stale_and_wrong_amount_notifications_change_nothing(
        client, db, clock, live_app, sandbox, our_port):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    await sandbox.switches(drop_notifications=True)
    await sandbox.pay(no)
    [note] = await sandbox.wait_delivered([no], states=("dropped",))
    headers, genuine = await sandbox.signed(note["id"])
    notify = f"http://127.0.0.1:{our_port}/api/v1/payments/notify/paysim"

    async with httpx.AsyncClient(timeout=10) as http:
        forged_headers = wire.sign("not-the-key", genuine, at=dt.datetime.now(dt.UTC))
        forged_headers[wire.H_SERIAL] = wire.key_serial(PAYSIM_KEY)  # claims to be signed with our key
        forged = await http.post(notify, content=genuine, headers=forged_headers)
        other_key = await http.post(notify, content=genuine,
                                    headers=wire.sign("not-the-key", genuine, at=dt.datetime.now(dt.UTC)))
        changed = json.loads(genuine)
        changed["resource"]["amount"]["total"] = 1
        tampered = await http.post(notify, headers=headers,
                                   content=json.dumps(changed, ensure_ascii=False, separators=(",", ":")).encode())
        stale_at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6)
        stale = await http.post(notify, content=genuine, headers=wire.sign(PAYSIM_KEY, genuine, at=stale_at))
        unsigned = await http.post(notify, content=genuine, headers={"Content-Type": "application/json"})
        for r in (forged, other_key, tampered, stale, unsigned):
            assert r.status_code == 401 and r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["code"] == "notification_rejected"
        assert (await get_booking(db, booking_id)).state == "held"
        assert (await latest_payment(db, booking_id)).state == "created"
        async with db.read() as s:
            outcomes = sorted(await s.scalars(select(PaymentNotification.outcome)))
        assert outcomes == ["signature_invalid", "signature_invalid", "signature_missing", "timestamp_out_of_window",
                            "unknown_key"]

        # the genuine notification still works after the forgeries (none pre-empted its id) ...
        ok = await http.post(notify, content=genuine, headers=headers)
        assert ok.status_code == 200 and ok.json()["code"] == "SUCCESS"
        # ... and a replay of it is a no-op
        again = await http.post(notify, content=genuine, headers=headers)
        assert again.status_code == 200
    assert (await get_booking(db, booking_id)).state == "confirmed"
    assert await count_rows(db, BookingEvent, BookingEvent.to_state == "confirmed") == 1
    await assert_money_invariant(db)


async def test_wrong_amount_from_the_provider_is_refunded_exactly_once_and_never_confirms(
        client, db, clock, live_app, sandbox, our_port, job_ctx):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    await sandbox.tamper(no, 1)  # the provider's ledger disagrees with ours: 0.01 yuan
    await sandbox.pay(no)
    [note] = await sandbox.wait_delivered([no])  # acknowledged: we recorded it and took it on

    assert (await get_booking(db, booking_id)).state == "held"  # never confirmed on a wrong amount
    payment = await latest_payment(db, booking_id)
    assert (payment.state, payment.settled_as, payment.flagged_reason, payment.amount) == (
        "paid", "refund", "amount_mismatch", 1)
    await assert_money_invariant(db)  # the refund is pending from the same commit on

    # copies of the notification, at once, and a redelivery by the provider: no second refund
    headers, body = await sandbox.signed(note["id"])
    notify = f"http://127.0.0.1:{our_port}/api/v1/payments/notify/paysim"
    async with httpx.AsyncClient(timeout=10) as http:
        copies = await asyncio.gather(*(http.post(notify, content=body, headers=headers) for _ in range(8)))
    assert {r.status_code for r in copies} == {200}
    await sandbox.redeliver(note["id"])
    await sandbox.wait_delivered([no])

    assert [r for _, r in await run_jobs(job_ctx, "payment.refund")] == ["done"]
    assert await run_jobs(job_ctx, "payment.refund") == []
    assert [(r["amount"], r["out_refund_no"]) for r in await sandbox.refunds(no)] == [(1, f"{no}R")]
    assert await count_rows(db, Refund) == 1
    assert await count_rows(db, Refund, Refund.state == "succeeded") == 1
    async with db.read() as s:
        outcomes = list(await s.scalars(select(PaymentNotification.outcome)))
    assert outcomes == ["mismatch_refund"]  # recorded once; the copies replay its answer
    await assert_money_invariant(db)

    # the provider's bill and ours now agree about this money
    _, op = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    day = dt.datetime.now(wire.CST).date()
    report = (await client.get(f"/api/v1/staff/payments/reconciliation?date={day}", headers=auth(op))).json()
    assert [d for d in report["differences"] if d["out_trade_no"] == no] == []

    # the hold is still running: the patient can pay the right amount after all
    again = await start_payment(client, token, booking_id)
    assert again.status_code == 201 and again.json()["amount"] == FEE
