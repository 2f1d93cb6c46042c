"""Payment rules at the unit level, with the in-memory provider (same port, same signed wire
format as the sandbox): who may pay what, idempotency, refunds through provider failures,
money views, reconciliation, and the I5 checker itself."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

import pytest
from sqlalchemy import delete, select

from guahao.booking import actions as booking_actions
from guahao.outbox.registry import JobContext, PermanentFailure
from guahao.payments import jobs as payment_jobs
from guahao.payments import wire
from guahao.payments.fake import InMemoryPayments
from guahao.payments.invariants import check_money
from guahao.payments.models import Payment, Refund
from tests.builders import auth, make_hospital, make_staff
from tests.payments_support import (
    FEE,
    assert_money_invariant,
    count_rows,
    hold,
    make_world,
    new_patient,
    run_jobs,
    start_payment,
)


@pytest.fixture
def fake(app, clock) -> InMemoryPayments:
    port = InMemoryPayments(clock=clock)
    app.state.providers["payments"] = port
    return port


@pytest.fixture
def ctx(app, settings, clock) -> JobContext:
    return JobContext(db=app.state.db, clock=clock, settings=settings, providers=app.state.providers)


async def _notify(client, headers_body):
    headers, body = headers_body
    return await client.post("/api/v1/payments/notify/paysim", content=body, headers=headers)


async def _paid_booking(client, db, clock, fake, world) -> tuple[int, str, str]:
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    no = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    assert (await _notify(client, fake.pay(no))).status_code == 200
    return booking_id, token, no


# --- starting a payment --------------------------------------------------------------------

async def test_only_a_live_hold_of_ones_own_can_be_paid(client, db, clock, fake):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    _, stranger, _ = await new_patient(db, clock)

    assert (await start_payment(client, stranger, booking_id)).json()["code"] == "not_found"
    assert (await client.get(f"/api/v1/bookings/{booking_id}/payments", headers=auth(stranger))).status_code == 404
    assert (await client.post(f"/api/v1/bookings/{booking_id}/payments")).status_code == 401
    clock.advance(minutes=15)
    expired = await start_payment(client, token, booking_id)
    assert (expired.status_code, expired.json()["code"]) == (409, "hold_expired")

    other = await hold(db, clock, account, patient, world["slot"])
    await client.post(f"/api/v1/bookings/{other}/cancel", headers=auth(token))
    cancelled = await start_payment(client, token, other)
    assert (cancelled.status_code, cancelled.json()["code"]) == (409, "booking_not_payable")
    assert "已取消" in cancelled.json()["detail"]
    assert await count_rows(db, Payment) == 0


async def test_paying_twice_returns_the_same_payment_and_the_amount_is_always_ours(client, db, clock, fake):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])

    answers = await asyncio.gather(*(
        client.post(f"/api/v1/bookings/{booking_id}/payments", json={"amount": 1}, headers=auth(token))
        for _ in range(10)))

    assert Counter(r.status_code for r in answers) == {201: 1, 200: 9}
    assert {(r.json()["payment_id"], r.json()["amount"], r.json()["pay_url"]) for r in answers} == {
        (answers[0].json()["payment_id"], FEE, answers[0].json()["pay_url"])}
    expires = dt.datetime.fromisoformat(answers[0].json()["expires_at"])
    assert expires == clock.now() + dt.timedelta(minutes=15) and expires.utcoffset() == dt.timedelta(hours=8)
    assert await count_rows(db, Payment) == 1 and fake.calls.count("create") >= 1


async def test_provider_down_answers_503_and_the_retry_resumes_the_same_payment(client, db, clock, fake):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    fake.down = True
    down = await start_payment(client, token, booking_id)
    assert (down.status_code, down.json()["code"]) == (503, "payments_unavailable")
    fake.down = False
    again = await start_payment(client, token, booking_id)
    assert again.status_code == 200 and again.json()["pay_url"]
    async with db.read() as s:
        assert [p.pay_url is not None for p in await s.scalars(select(Payment))] == [True]


async def test_no_provider_configured_is_a_clear_503(client, db, clock, app):
    app.state.providers["payments"] = None
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    assert (await start_payment(client, token, booking_id)).json()["code"] == "payments_unavailable"
    assert (await client.post("/api/v1/payments/notify/paysim", content=b"{}")).status_code == 404


async def test_a_failed_payment_can_be_followed_by_a_new_one(client, db, clock, fake):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    first = (await start_payment(client, token, booking_id)).json()
    assert (await _notify(client, fake.fail(first["pay_url"].rsplit("/", 1)[1]))).status_code == 200
    second = await start_payment(client, token, booking_id)
    assert second.status_code == 201 and second.json()["payment_id"] != first["payment_id"]
    listed = (await client.get(f"/api/v1/bookings/{booking_id}/payments", headers=auth(token))).json()
    assert [p["state"] for p in listed] == ["failed", "created"]
    assert (await start_payment(client, token, booking_id)).json()["payment_id"] == second.json()["payment_id"]


# --- notifications that are refused ------------------------------------------------------

async def test_unknown_payment_and_malformed_notifications_are_refused(client, db, clock, fake):
    from guahao.payments.port import ProviderPayment

    unknown = fake.notification(ProviderPayment("GH000000UNKNOWN", "SUCCESS", FEE, "42x", clock.now()),
                                "TRANSACTION.SUCCESS")
    r = await _notify(client, unknown)
    assert (r.status_code, r.json()["code"]) == (400, "payment_unknown")
    assert (await _notify(client, unknown)).status_code == 400  # a retry gets the same answer
    garbage = b'{"id": 1}'
    r = await client.post("/api/v1/payments/notify/paysim", content=garbage,
                          headers=wire.sign(fake.key, garbage, at=clock.now()))
    assert (r.status_code, r.json()["code"]) == (400, "notification_malformed")
    r = await client.post("/api/v1/payments/notify/wechat", content=garbage)
    assert r.status_code == 404


# --- refunds ------------------------------------------------------------------------------

async def test_refund_retries_while_the_provider_is_down_and_happens_once(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    booking_id, token, no = await _paid_booking(client, db, clock, fake, world)
    await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(token))
    fake.down = True
    assert await run_jobs(ctx, "payment.refund") == [("payment.refund", "RetryLater")]
    async with db.read() as s:
        refund = await s.scalar(select(Refund))
    assert (refund.state, refund.attempts) == ("pending", 1) and "down" in refund.last_error
    await assert_money_invariant(db)

    fake.down = False
    assert await run_jobs(ctx, "payment.refund") == [("payment.refund", "done")]
    payload = {"booking_id": booking_id, "hospital_id": world["hospital"], "state": "cancelled", "amount": FEE}
    await payment_jobs.refund_payment(ctx, payload)  # redelivered after a crash: no second refund
    assert fake.calls.count("refund") == 2 and len(fake.refunds) == 1  # the failed try, the refund
    await assert_money_invariant(db)


async def test_a_refund_the_provider_refuses_is_dead_lettered_and_breaks_the_invariant(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    booking_id, token, no = await _paid_booking(client, db, clock, fake, world)
    await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(token))
    del fake.orders[no]  # the provider lost the order: it refuses the refund
    with pytest.raises(PermanentFailure):
        await payment_jobs.refund_payment(ctx, {"booking_id": booking_id, "state": "cancelled"})
    async with db.read() as s:
        problems = await check_money(s)
    assert len(problems) == 1 and "failed" in problems[0]
    with pytest.raises(PermanentFailure):
        await payment_jobs.refund_payment(ctx, {"state": "cancelled"})


async def test_a_booking_paid_twice_gets_the_second_payment_back(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])
    first = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    await _notify(client, fake.fail(first))
    second = (await start_payment(client, token, booking_id)).json()["pay_url"].rsplit("/", 1)[1]
    await _notify(client, fake.pay(second))
    await _notify(client, fake.pay(first))  # the "failed" payment went through after all

    async with db.read() as s:
        settled = dict((p.out_trade_no, p.settled_as) for p in await s.scalars(select(Payment)))
    assert settled == {first: "refund", second: "booking"}
    await client.post(f"/api/v1/bookings/{booking_id}/cancel", headers=auth(token))
    assert sorted(r for _, r in await run_jobs(ctx, "payment.refund")) == ["done", "done"]
    assert sorted(r.out_trade_no for r in fake.refunds.values()) == sorted([first, second])
    await assert_money_invariant(db)


# --- the checker ---------------------------------------------------------------------------

async def test_money_checker_finds_unpaid_confirmations_and_lost_refunds(client, db, clock, fake):
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    free_ride = await hold(db, clock, account, patient, world["slot"])
    async with db.begin() as s:
        await booking_actions.do_confirm(s, free_ride, now=clock.now())  # confirmed, never paid
    async with db.read() as s:
        assert [p for p in await check_money(s) if f"booking {free_ride} " in p]

    acc2, tok2, pat2 = await new_patient(db, clock)
    late = await hold(db, clock, acc2, pat2, world["slot"])
    no = (await start_payment(client, tok2, late)).json()["pay_url"].rsplit("/", 1)[1]
    clock.advance(minutes=16)
    await _notify(client, fake.pay(no))
    async with db.begin() as s:
        await s.execute(delete(Refund))  # as if the refund had been lost
    async with db.read() as s:
        assert any("not refunded" in p for p in await check_money(s))


# --- money views ----------------------------------------------------------------------------

async def test_staff_see_payments_of_their_hospitals_bookings_only(client, db, clock, fake):
    world = await make_world(db, clock)
    booking_id, token, _ = await _paid_booking(client, db, clock, fake, world)
    _, desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=world["hospital"])
    other_hospital = await make_hospital(db, clock.now(), name="别家医院")
    _, outsider = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=other_hospital)

    view = (await client.get(f"/api/v1/staff/bookings/{booking_id}/payments", headers=auth(desk))).json()
    assert (view["booking_state"], view["paid"], view["refunded"], view["refund_pending"]) == ("confirmed", FEE, 0, 0)
    assert view["payments"][0]["provider_txn_id"]
    assert (await client.get(f"/api/v1/staff/bookings/{booking_id}/payments", headers=auth(outsider))).status_code == 404
    assert (await client.get(f"/api/v1/staff/bookings/{booking_id}/payments", headers=auth(token))).status_code == 401


async def test_totals_per_day_and_hospital(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    first, token, _ = await _paid_booking(client, db, clock, fake, world)
    await client.post(f"/api/v1/bookings/{first}/cancel", headers=auth(token))
    await run_jobs(ctx, "payment.refund")
    clock.advance(days=1)  # the next day (still before the visit), another payment and a pending refund
    world2 = await make_world(db, clock)
    second, token2, _ = await _paid_booking(client, db, clock, fake, world2)
    await client.post(f"/api/v1/bookings/{second}/cancel", headers=auth(token2))
    fake.down = True
    await run_jobs(ctx, "payment.refund")

    _, op = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    r = await client.get("/api/v1/staff/payments/totals?from=2026-11-19&to=2026-11-20", headers=auth(op))
    rows = [(x["date"], x["hospital_id"], x["paid"], x["refunded"], x["refund_pending"]) for x in r.json()["rows"]]
    assert rows == [("2026-11-19", world["hospital"], FEE, FEE, 0), ("2026-11-20", world2["hospital"], FEE, 0, FEE)]
    assert (r.json()["paid"], r.json()["refunded"], r.json()["refund_pending"]) == (2 * FEE, FEE, FEE)

    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world2["hospital"])
    mine = (await client.get("/api/v1/staff/payments/totals?from=2026-11-19&to=2026-11-20", headers=auth(admin))).json()
    assert [x["hospital_id"] for x in mine["rows"]] == [world2["hospital"]]
    _, desk = await make_staff(db, clock.now(), role="front_desk", hospital_id=world2["hospital"])
    assert (await client.get("/api/v1/staff/payments/totals?from=2026-11-19&to=2026-11-20",
                             headers=auth(desk))).status_code == 403
    default = (await client.get("/api/v1/staff/payments/totals", headers=auth(op))).json()
    assert (default["date_from"], default["date_to"], default["paid"]) == ("2026-11-14", "2026-11-20", 2 * FEE)
    too_long = await client.get("/api/v1/staff/payments/totals?from=2026-01-01&to=2026-12-31", headers=auth(op))
    assert (too_long.status_code, too_long.json()["code"]) == (422, "report_range_too_long")


async def test_reconciliation_report_lists_every_difference(client, db, clock, fake, ctx):
    world = await make_world(db, clock)
    kept, _, kept_no = await _paid_booking(client, db, clock, fake, world)
    back, token, back_no = await _paid_booking(client, db, clock, fake, world)
    await client.post(f"/api/v1/bookings/{back}/cancel", headers=auth(token))
    await run_jobs(ctx, "payment.refund")
    _, op = await make_staff(db, clock.now(), role="platform_operator", hospital_id=None)
    day = clock.now().astimezone(wire.CST).date()

    report = (await client.get(f"/api/v1/staff/payments/reconciliation?date={day}", headers=auth(op))).json()
    assert report["balanced"] and report["ours"] == report["theirs"] == {
        "payments": 2, "paid": 2 * FEE, "refunds": 1, "refunded": FEE}

    account, token3, patient = await new_patient(db, clock)
    silent = await hold(db, clock, account, patient, world["slot"])
    silent_no = (await start_payment(client, token3, silent)).json()["pay_url"].rsplit("/", 1)[1]
    fake.pay(silent_no)  # paid at the provider; its notification never reached us
    report = (await client.get(f"/api/v1/staff/payments/reconciliation?date={day}", headers=auth(op))).json()
    assert not report["balanced"]
    assert [(d["kind"], d["out_trade_no"], d["booking_id"]) for d in report["differences"]] == [
        ("not_settled_here_created", silent_no, silent)]
    _, admin = await make_staff(db, clock.now(), role="hospital_admin", hospital_id=world["hospital"])
    assert (await client.get(f"/api/v1/staff/payments/reconciliation?date={day}",
                             headers=auth(admin))).status_code == 403


