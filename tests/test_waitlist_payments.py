"""An offer is paid like any hold; a payment that arrives after the offer lapsed is refunded
exactly once, and the next waiter's offer is untouched."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from guahao.outbox.registry import JobContext
from guahao.payments.fake import InMemoryPayments
from guahao.payments.models import Refund
from tests.builders import auth
from tests.payments_support import assert_money_invariant, count_rows, latest_payment, start_payment
from tests.waitlist_support import booking, check, entries, make_world, run_jobs, sell_out, waiters


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


async def _offer_to_head(client, db, clock, ctx, n: int = 2):
    world = await make_world(db, clock, capacity=1)
    sold = await sell_out(db, clock, world)
    queue = await waiters(db, clock, world, n)
    account, token, _patient, paid = sold[0]
    assert (await client.post(f"/api/v1/bookings/{paid}/cancel", headers=auth(token))).status_code == 200
    await run_jobs(ctx)
    return world, queue


async def test_a_paid_offer_is_a_confirmed_booking_and_the_entry_is_fulfilled(client, db, clock, fake, ctx):
    world, queue = await _offer_to_head(client, db, clock, ctx)
    offer = (await entries(db, world["schedule"]))[0].offer_booking_id
    no = (await start_payment(client, queue[0][1], offer)).json()["pay_url"].rsplit("/", 1)[1]
    assert (await _notify(client, fake.pay(no))).status_code == 200
    assert (await booking(db, offer)).state == "confirmed"
    mine = (await client.get("/api/v1/waitlist", headers=auth(queue[0][1]))).json()["items"]
    assert [(i["state"], i["offer_booking_id"]) for i in mine] == [("fulfilled", offer)]
    await check(db, clock)


async def test_late_payment_of_a_lapsed_offer_is_refunded_once_and_the_next_offer_stands(client, db, clock, fake,
                                                                                         ctx):
    world, queue = await _offer_to_head(client, db, clock, ctx)
    first = (await entries(db, world["schedule"]))[0].offer_booking_id
    no = (await start_payment(client, queue[0][1], first)).json()["pay_url"].rsplit("/", 1)[1]
    clock.advance(minutes=31)  # the head never paid in time
    await run_jobs(ctx)
    rows = await entries(db, world["schedule"])
    assert [e.state for e in rows] == ["lapsed", "offered"]
    second = await booking(db, rows[1].offer_booking_id)

    for _ in range(3):  # the late payment arrives, three notifications of it
        assert (await _notify(client, fake.pay(no))).status_code == 200

    payment = await latest_payment(db, first)
    assert (payment.state, payment.settled_as) == ("paid", "refund")
    assert await count_rows(db, Refund) == 1
    async with db.read() as s:
        refund = await s.scalar(select(Refund))
    assert refund.reason == "late_payment"
    after = await booking(db, second.id)
    assert (after.state, after.visit_no, after.updated_at) == ("held", second.visit_no, second.updated_at)
    assert (await booking(db, first)).state in ("held", "expired")  # lapsed, never confirmed
    await assert_money_invariant(db)
    await check(db, clock)
