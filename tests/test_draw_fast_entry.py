"""The draw's entry fast path (draw/fast_entry.py): on PostgreSQL an entry is made in front of
FastAPI in one statement, with the route's answer; every case it must not answer reaches the
route, which answers as it always did; and no entry answered 202 is ever left out of the draw."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from guahao.draw import allocation, fast_entry
from guahao.draw import entries as draw_entries
from tests import draw_support as ds
from tests.booking_builders import make_patient
from tests.builders import make_account

pytestmark = pytest.mark.usefixtures("postgresql_only")


@pytest.fixture
def postgresql_only(backend):
    if backend != "postgresql":
        pytest.skip("the fast path is PostgreSQL's (SQLite entries take the route, tested in test_draw.py)")


@pytest.fixture
def route_must_not_run(monkeypatch):
    async def reached(*args, **kwargs):
        raise AssertionError("the request reached the route")
    monkeypatch.setattr(draw_entries, "do_enter", reached)


async def _open(db, clock, **kwargs) -> ds.DrawWorld:
    world = await ds.draw_world(db, clock, **kwargs)
    clock.set(world.release_at + dt.timedelta(seconds=1))
    return world


async def test_an_entry_is_made_before_the_route_with_the_routes_answer(client, db, clock, monkeypatch):
    world = await _open(db, clock)
    (fast_token, _, fast_patient), (route_token, _, route_patient) = await ds.patients(db, clock, 2)

    async def reached(*args, **kwargs):
        raise AssertionError("the request reached the route")
    with monkeypatch.context() as patched:
        patched.setattr(draw_entries, "do_enter", reached)
        fast = await ds.enter(client, world, fast_token, fast_patient, opt_in=True)
    with monkeypatch.context() as patched:  # the same request through the route, for another person
        async def falls_through(*args, **kwargs):
            return None
        patched.setattr(fast_entry, "_answer", falls_through)
        route = await ds.enter(client, world, route_token, route_patient, opt_in=True)
    assert fast.status_code == route.status_code == 202
    fast_body, route_body = fast.json(), route.json()
    assert set(fast_body) == set(route_body)
    for key in ("draw_id", "waitlist_opt_in", "closes_at", "result_at", "already_entered", "arrived_at"):
        assert fast_body[key] == route_body[key], key
    assert fast_body["receipt"] != route_body["receipt"]
    stored = {e.receipt: e for e in await ds.entries(db, world)}
    assert stored[fast_body["receipt"]].patient_id == fast_patient and stored[fast_body["receipt"]].waitlist_opt_in


async def test_a_second_device_of_the_same_person_gets_the_same_receipt_from_the_route(client, db, clock):
    world = await _open(db, clock)
    [(token, account_id, patient_id)] = await ds.patients(db, clock, 1)
    first = await ds.enter(client, world, token, patient_id)
    again = await ds.enter(client, world, token, patient_id)
    assert first.status_code == again.status_code == 202
    assert first.json()["already_entered"] is False and again.json()["already_entered"] is True
    assert again.json()["receipt"] == first.json()["receipt"]
    assert len(await ds.entries(db, world)) == 1


async def test_what_the_statement_does_not_enter_the_route_explains(client, app, db, clock, route_must_not_run,
                                                                   monkeypatch):
    """Each of these inserts nothing in the fast path and reaches the route: proven by the
    route's stand-in failing, so each answer below is a 500 from the test's AssertionError
    unless the fast path answered it itself, which it must not (a token that is no session is
    the route's 401, in test_refusals_are_the_routes)."""
    world = await _open(db, clock)
    [(token, account_id, patient_id)] = await ds.patients(db, clock, 1)
    other_account, other_token = await make_account(db, clock.now())
    unverified = await make_patient(db, clock.now(), other_account, verified=False)
    cases = {
        "not the account's patient": (other_token, patient_id, world),
        "unverified patient": (other_token, unverified, world),
    }
    for name, (tok, pid, w) in cases.items():
        answer = await ds.enter(client, w, tok, pid)
        assert answer.status_code == 500, name
    clock.set(world.release_at - dt.timedelta(minutes=1))
    assert (await ds.enter(client, world, token, patient_id)).status_code == 500  # before it opens
    clock.set(world.release_at + dt.timedelta(hours=1))
    assert (await ds.enter(client, world, token, patient_id)).status_code == 500  # after it closed
    assert await ds.entries(db, world) == []


async def test_refusals_are_the_routes(client, db, clock):
    world = await _open(db, clock, window=30)
    [(token, _, patient_id)] = await ds.patients(db, clock, 1)
    other_account, other_token = await make_account(db, clock.now())
    unverified = await make_patient(db, clock.now(), other_account, verified=False)
    assert (await ds.enter(client, world, other_token, patient_id)).status_code == 404
    assert (await ds.enter(client, world, other_token, unverified)).json()["code"] == "patient_not_verified"
    assert (await ds.enter(client, world, "not-a-token", patient_id)).status_code == 401
    clock.set(world.release_at + dt.timedelta(seconds=31))
    closed = await ds.enter(client, world, token, patient_id)
    assert closed.status_code == 409 and closed.json()["code"] == "draw_closed"


async def test_the_entry_budget_per_token_applies_before_the_statement(app, client, db, clock):
    world = await _open(db, clock)
    [(token, _, patient_id)] = await ds.patients(db, clock, 1)
    app.state.settings = app.state.settings.model_copy(update={"hold_limit_per_account": "2/minute",
                                                               "hold_refusal_delay_ms": 0})
    answers = [await ds.enter(client, world, token, patient_id) for _ in range(3)]
    assert [a.status_code for a in answers] == [202, 202, 429]
    assert answers[2].json()["code"] == "rate_limited" and "retry-after" in answers[2].headers


async def test_entries_racing_the_ranking_are_either_ranked_or_refused(client, db, clock):
    """80 entries sent at once while the draw is ranked: every 202 receipt is in the ranking
    (none answered and then left out), every other answer is draw_closed."""
    world = await _open(db, clock, window=30)
    people = await ds.many_patients(db, clock, 80)
    row = await ds.draw_row(db, world)
    clock.set(row.closes_at - dt.timedelta(milliseconds=1))  # every entry arrives in time

    async def rank():  # in the middle of the stream: once some entries are in
        while len(await ds.entries(db, world)) < 10:
            await asyncio.sleep(0.001)
        async with db.begin() as s:
            return await allocation.do_rank(s, world.draw_id, now=row.result_at)

    answers, ranked = await asyncio.gather(
        asyncio.gather(*[ds.enter(client, world, token, patient) for token, _, patient in people]), rank())
    assert ranked
    receipts = {a.json()["receipt"] for a in answers if a.status_code == 202}
    refused = [a.json()["code"] for a in answers if a.status_code != 202]
    assert set(refused) <= {"draw_closed"}
    ranked_receipts = {e.receipt for e in await ds.entries(db, world) if e.rank is not None}
    assert receipts == ranked_receipts
    assert len(receipts) + len(refused) == len(people)
    assert len(receipts) >= 10
