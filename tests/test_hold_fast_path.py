"""The sold-out fast path (booking/fast_path.py): a hold for a slot the gate refuses is
answered in front of FastAPI with the route's answer, and everything it should not answer
reaches the route as if the fast path were not there."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import pytest
from sqlalchemy import select

from guahao.booking import hold_flow
from guahao.core.idempotency import IdempotencyKey
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_hospital, make_staff

DAY = dt.date(2026, 11, 21)
PATH = "/api/v1/bookings"


async def _slots(db, now, capacity=1, n=1):
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=None, day=DAY,
                                   capacity=capacity)
    return slots[:n] if n > 1 else slots[0]


async def _patient(db, now):
    account_id, token = await make_account(db, now)
    return account_id, token, await make_patient(db, now, account_id)


def _post(client, token, slot, patient, key=None, **headers):
    return client.post(PATH, json={"slot_id": slot, "patient_id": patient},
                       headers={**auth(token), "Idempotency-Key": key or uuid.uuid4().hex, **headers})


@pytest.fixture
def route_must_not_run(monkeypatch):
    """The route's hold steps fail the test if reached: only the fast path may answer."""
    async def reached(*args, **kwargs):
        raise AssertionError("the request reached the route")

    monkeypatch.setattr(hold_flow, "hold_once", reached)
    monkeypatch.setattr(hold_flow, "replayed", reached)


async def _stored(db, account_id, key):
    async with db.read() as s:
        return (await s.execute(select(IdempotencyKey.status_code, IdempotencyKey.response)
                                .where(IdempotencyKey.account_id == account_id, IdempotencyKey.key == key))).one()


async def test_a_slot_known_full_is_answered_before_the_route_and_recorded_as_the_keys_answer(
        client, app, db, clock, monkeypatch):
    now = clock.now()
    slot = await _slots(db, now)
    account_id, token, patient = await _patient(db, now)
    await app.state.gate.mark_full(slot)
    async def reached(*args, **kwargs):
        raise AssertionError("the request reached the route")
    monkeypatch.setattr(hold_flow, "hold_once", reached)

    answer = await _post(client, token, slot, patient, key="K1")

    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json()
    assert body["code"] == "slot_sold_out" and body["instance"] == PATH and "约满" in body["detail"]
    assert await _stored(db, account_id, "K1") == (409, body)


async def test_the_fast_answer_is_the_routes_answer(client, app, db, clock):
    """Same slot refused once by the route (a claim finds it full) and once by the fast path."""
    now = clock.now()
    slot = await _slots(db, now)
    winner = await _patient(db, now)
    assert (await _post(client, winner[1], slot, winner[2])).status_code == 201
    late = await _patient(db, now)
    by_route = await _post(client, late[1], slot, late[2])  # the claim finds no seat and marks the slot
    assert by_route.json()["code"] == "slot_sold_out"
    assert await app.state.gate.known_full(slot)
    other = await _patient(db, now)
    by_fast_path = await _post(client, other[1], slot, other[2])
    assert (by_fast_path.status_code, by_fast_path.json()) == (by_route.status_code, by_route.json())
    assert by_fast_path.headers["content-type"] == by_route.headers["content-type"]


async def test_the_answer_is_in_the_callers_language(client, app, db, clock, route_must_not_run):
    now = clock.now()
    slot = await _slots(db, now)
    account_id, token, patient = await _patient(db, now)
    await app.state.gate.mark_full(slot)
    english = await _post(client, token, slot, patient, **{"Accept-Language": "en-US,en;q=0.9"})
    assert "fully booked" in english.json()["detail"]

    saved = await _patient(db, now)
    assert (await client.patch("/api/v1/me", json={"locale": "en"}, headers=auth(saved[1]))).status_code == 200
    by_saved_choice = await _post(client, saved[1], slot, saved[2])  # no Accept-Language: the saved choice
    assert "fully booked" in by_saved_choice.json()["detail"]
    never_chose = await _post(client, token, slot, patient)
    assert "约满" in never_chose.json()["detail"]


async def test_a_retry_of_a_winning_key_gets_its_booking_after_the_slot_filled(client, app, db, clock):
    now = clock.now()
    slot = await _slots(db, now)
    account_id, token, patient = await _patient(db, now)
    first = await _post(client, token, slot, patient, key="WIN")
    assert first.status_code == 201
    await app.state.gate.mark_full(slot)
    retry = await _post(client, token, slot, patient, key="WIN")
    assert (retry.status_code, retry.json()) == (201, first.json())


async def test_a_sold_out_answer_is_replayed_by_the_fast_path_too(client, app, db, clock):
    now = clock.now()
    slot = await _slots(db, now)
    account_id, token, patient = await _patient(db, now)
    await app.state.gate.mark_full(slot)
    first = await _post(client, token, slot, patient, key="SO")
    retry = await _post(client, token, slot, patient, key="SO")
    assert (retry.status_code, retry.json()) == (409, first.json())


async def test_requests_the_fast_path_must_not_answer_reach_the_route(client, app, db, clock):
    now = clock.now()
    slot = await _slots(db, now)
    account_id, token, patient = await _patient(db, now)
    await app.state.gate.mark_full(slot)
    _, staff_token = await make_staff(db, now, role="platform_operator", hospital_id=None)

    assert (await _post(client, "not-a-session", slot, patient)).status_code == 401
    assert (await _post(client, staff_token, slot, patient)).status_code == 401
    no_key = await client.post(PATH, json={"slot_id": slot, "patient_id": patient}, headers=auth(token))
    assert no_key.json()["code"] == "idempotency_key_required"
    bad_body = await client.post(PATH, json={"slot_id": "x"}, headers={**auth(token), "Idempotency-Key": "B"})
    assert bad_body.status_code == 422
    await _post(client, token, slot, patient, key="REUSED")
    reused = await _post(client, token, slot + 1, patient, key="REUSED")
    assert reused.json()["code"] == "idempotency_key_reused"

    assert (await client.post("/api/v1/auth/logout", headers=auth(token))).status_code == 204
    after_logout = await _post(client, token, slot, patient)
    assert after_logout.status_code == 401  # a revoked session is refused at once, not after a cache delay


async def test_a_slot_the_gate_lets_through_is_held_by_the_route(client, app, db, clock):
    now = clock.now()
    slot = await _slots(db, now)
    account_id, token, patient = await _patient(db, now)
    answer = await _post(client, token, slot, patient)
    assert answer.status_code == 201


async def test_when_the_seats_left_all_have_claimants_the_fast_path_answers(client, app, db, clock,
                                                                          route_must_not_run):
    """Gate tickets: one seat may still be free and one request of this process waits for it;
    the next arrival is answered sold out without waiting (booking/gate.py)."""
    now = clock.now()
    slot = await _slots(db, now)
    account_id, token, patient = await _patient(db, now)
    gate = app.state.gate
    gate.note_remaining(slot, 1)
    state = gate._slots[slot]
    state.running = 2  # the lane is busy ...
    state.waiting.append(object())  # ... and one claimant already waits for the last seat
    assert gate.refuses_now(slot)
    answer = await _post(client, token, slot, patient)
    assert answer.json()["code"] == "slot_sold_out"
    state.waiting.clear()
    state.running = 0


async def test_on_sqlite_concurrent_sold_out_answers_share_write_transactions(client, app, db, clock, backend,
                                                                            monkeypatch):
    """Group commit (booking/answer_batch.py): SQLite has one writer, so 40 sold-out answers
    arriving together are recorded in a few write transactions, not 40; each is still the
    key's answer, stored before it was given. PostgreSQL opens none: one autocommit statement each."""
    now = clock.now()
    slot = await _slots(db, now)
    people = [await _patient(db, now) for _ in range(40)]
    await app.state.gate.mark_full(slot)
    transactions = 0
    begin = type(db).begin

    def counting_begin(self):
        nonlocal transactions
        transactions += 1
        return begin(self)

    monkeypatch.setattr(type(db), "begin", counting_begin)
    answers = await asyncio.gather(*[_post(client, token, slot, patient, key=f"G{i}")
                                     for i, (_, token, patient) in enumerate(people)])
    monkeypatch.undo()
    assert {r.json()["code"] for r in answers} == {"slot_sold_out"}
    if backend == "sqlite":
        assert 0 < transactions < len(people) / 2, transactions
    else:
        assert transactions == 0
    for i, (account_id, _, _) in enumerate(people):
        assert (await _stored(db, account_id, f"G{i}"))[0] == 409
