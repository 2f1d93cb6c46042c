"""Bots at release time (issue 12, 服务器被攻击): new holds are limited per account, per patient
and per client address with the product's default limits; a burst of thousands of holds from
one account is refused with 429 + Retry-After before any database work, while other patients are
all served; every hold acknowledged is a live booking and the invariants hold; a replay of an
answered key is never refused. What the burst costs the others in latency is measured by
`guahao bench bots` (docs/BENCHMARKS.md), not here."""
from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter

import httpx
import pytest
from sqlalchemy import select

from guahao.app import create_app
from guahao.booking.models import LIVE_STATES, Booking
from guahao.config import Settings
from guahao.ops.invariants import check_all
from tests.booking_builders import make_patient, make_schedule
from tests.builders import auth, make_account, make_department, make_doctor, make_hospital

# 10,000 in `guahao bench bots`; here fewer: through httpx's in-process transport most of the
# cost of a refused request is the test client's own, and the outcome is the same
BOT_REQUESTS = 4_000
PATIENTS = 50


@pytest.fixture
async def app(settings, clock):
    """The app with the product's default hold limits (conftest loosens them for the suite)."""
    defaults = Settings()
    tight = settings.model_copy(update={"hold_limit_per_account": defaults.hold_limit_per_account,
                                        "hold_limit_per_address": defaults.hold_limit_per_address})
    application = create_app(tight, clock=clock)
    from tests.conftest import _wipe

    await _wipe(application.state.db)
    yield application
    await application.state.db.dispose()


def _client(app, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def _slot(db, now) -> int:
    hid = await make_hospital(db, now)
    dep = await make_department(db, hid)
    doc = await make_doctor(db, hid, dep)
    _, slots = await make_schedule(db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                   day=now.date() + dt.timedelta(days=2), capacity=30)
    return slots[0]


def _hold(client, token, patient, slot, key=None):
    return client.post("/api/v1/bookings", json={"slot_id": slot, "patient_id": patient},
                       headers={**auth(token), "Idempotency-Key": key or uuid.uuid4().hex})


async def test_a_burst_from_one_account_is_refused_and_others_are_served(app, db, clock):
    now = clock.now()
    slot = await _slot(db, now)
    bot_account, bot_token = await make_account(db, now)
    bot_patient = await make_patient(db, now, bot_account)
    people = []
    for _ in range(PATIENTS):
        account, token = await make_account(db, now)
        people.append((token, await make_patient(db, now, account)))
    first_key = uuid.uuid4().hex
    async with _client(app, "203.0.113.7") as bot, _client(app, "198.51.100.1") as crowd:
        first = await _hold(bot, bot_token, bot_patient, slot, first_key)
        assert first.status_code == 201
        # the bot keeps 400 requests in flight (a bot has sockets too; the admission bound of
        # the process, core/admission.py, is another defence, tested on its own)
        crowd_tasks = [asyncio.create_task(_hold(crowd, t, p, slot)) for t, p in people]
        bot_answers = []
        for _ in range(BOT_REQUESTS // 400):
            bot_answers += await asyncio.gather(*[_hold(bot, bot_token, bot_patient, slot) for _ in range(400)])
        crowd_answers = await asyncio.gather(*crowd_tasks)
        replay = await _hold(bot, bot_token, bot_patient, slot, first_key)  # the account is limited now
    bot_codes = Counter(r.json().get("code", r.status_code) for r in bot_answers)
    limit = int(Settings().hold_limit_per_account.split("/")[0])
    assert bot_codes["rate_limited"] >= BOT_REQUESTS - limit, bot_codes
    assert all(int(r.headers["retry-after"]) >= 1 for r in bot_answers if r.status_code == 429)
    # the others are not affected: every one of them got a real answer
    crowd_codes = Counter(r.status_code for r in crowd_answers)
    assert set(crowd_codes) <= {201, 409} and crowd_codes[201] == 29, crowd_codes  # 30 seats, one is the bot's
    # a replay is answered from the key once admitted; under the burst it may be told to wait
    # (429 is "try again", never a different answer), but never another booking
    assert replay.status_code == 429 or replay.json()["id"] == first.json()["id"]
    # nothing acknowledged is missing, nothing unacknowledged was booked, I1-I5 hold
    acknowledged = {r.json()["id"] for r in [first, *bot_answers, *crowd_answers] if r.status_code == 201}
    async with db.read() as s:
        live = set(await s.scalars(select(Booking.id).where(Booking.slot_id == slot, Booking.state.in_(LIVE_STATES))))
    assert live == acknowledged
    assert await check_all(db, now=clock.now()) == []


async def test_one_address_is_limited_but_another_is_not(app, db, clock):
    now = clock.now()
    slot = await _slot(db, now)
    account, token = await make_account(db, now)
    patient = await make_patient(db, now, account)
    per_minute = int(Settings().hold_limit_per_address.split("/")[0])
    async with _client(app, "192.0.2.9") as shared, _client(app, "192.0.2.10") as other:
        # many accounts behind one address (a script cycling accounts): past the address limit
        tokens = []
        for _ in range(12):
            acc, tok = await make_account(db, now)
            tokens.append((tok, await make_patient(db, now, acc)))
        answers = []
        for round_ in range(per_minute // len(tokens) + 2):
            answers += await asyncio.gather(*[_hold(shared, t, p, slot + 10_000 * (round_ + 1)) for t, p in tokens])
        limited = [r for r in answers if r.json().get("code") == "rate_limited"]
        assert limited, Counter(r.json().get("code") for r in answers)
        assert (await _hold(other, token, patient, slot)).status_code == 201


async def test_a_refused_hold_is_held_back_before_its_answer_and_an_admitted_one_is_not(app, db, clock, monkeypatch):
    """The tarpit (booking/budget.py): the budget's refusal sleeps for the configured delay,
    capped by its Retry-After, so a bot's connection sends at most one request per delay."""
    from guahao.booking import budget

    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(budget.asyncio, "sleep", record_sleep)
    now = clock.now()
    slot = await _slot(db, now)
    account, token = await make_account(db, now)
    patient = await make_patient(db, now, account)
    limit = int(Settings().hold_limit_per_account.split("/")[0])
    async with _client(app, "203.0.113.8") as bot:
        admitted = [await _hold(bot, token, patient, slot + 1 + i) for i in range(limit)]
        assert slept == [] and all(r.status_code != 429 for r in admitted)
        refused = await _hold(bot, token, patient, slot)
    assert refused.status_code == 429
    assert slept == [min(app.state.settings.hold_refusal_delay_ms / 1000, int(refused.headers["retry-after"]))]
    assert slept[0] > 0
