"""The sold-out gate and the per-slot lane (booking/gate.py), without a database.

Time inside the gate is `time.monotonic`; the tests replace it through the module's `time`
name only (patching the real `time.monotonic` would also move the event loop's clock).
The Redis half uses the machine's Redis at 127.0.0.1:6379 with slot ids drawn at random
from a range no real test or seed uses, so parallel runs do not see each other's keys.
"""
from __future__ import annotations

import asyncio
import secrets
import socket
import types

import pytest

from guahao.booking import gate as gate_module
from guahao.booking.gate import FULL_TTL_SECONDS, SoldOutGate

REDIS_URL = "redis://127.0.0.1:6379/0"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def mono(monkeypatch) -> FakeMonotonic:
    fake = FakeMonotonic()
    monkeypatch.setattr(gate_module, "time", types.SimpleNamespace(monotonic=fake))
    return fake


def _slot() -> int:
    return 10**12 + secrets.randbelow(10**12)


# --- the in-process negative cache ----------------------------------------------------------

async def test_full_is_remembered_for_the_ttl_and_no_longer(mono):
    gate = SoldOutGate()
    slot = _slot()
    assert not await gate.known_full(slot)
    await gate.mark_full(slot)
    assert await gate.known_full(slot)
    mono.now += FULL_TTL_SECONDS - 0.001
    assert await gate.known_full(slot)
    mono.now += 0.001  # exactly the TTL: the answer has run out
    assert not await gate.known_full(slot)
    mono.now += 5
    assert not await gate.known_full(slot)


async def test_marking_again_restarts_the_ttl(mono):
    gate = SoldOutGate()
    slot = _slot()
    await gate.mark_full(slot)
    mono.now += FULL_TTL_SECONDS * 0.9
    await gate.mark_full(slot)
    mono.now += FULL_TTL_SECONDS * 0.9
    assert await gate.known_full(slot)


async def test_forget_lets_requests_through_at_once(mono):
    gate = SoldOutGate()
    a, b = _slot(), _slot()
    await gate.mark_full(a)
    await gate.mark_full(b)
    await gate.forget(a)
    assert not await gate.known_full(a)
    assert await gate.known_full(b)  # only that slot
    await gate.forget(_slot())  # forgetting an unknown slot is harmless


async def test_memory_is_bounded_and_evicts_the_least_recently_marked(mono):
    gate = SoldOutGate(max_slots=3)
    a, b, c, d = (_slot() for _ in range(4))
    for slot in (a, b, c):
        await gate.mark_full(slot)
    await gate.mark_full(a)  # a is now the most recent
    await gate.mark_full(d)  # over the bound: b, the oldest, goes
    assert [await gate.known_full(s) for s in (a, b, c, d)] == [True, False, True, True]
    for _ in range(100):
        await gate.mark_full(_slot())
    assert len(gate._full) == 3  # the bound holds however many slots fill


# --- the per-slot lane ----------------------------------------------------------------------

async def _crowd(gate: SoldOutGate, slot: int, n: int, inside: dict, peak: dict, release: asyncio.Event):
    async def one():
        async with gate.slot_lane(slot):
            inside[slot] = inside.get(slot, 0) + 1
            peak[slot] = max(peak.get(slot, 0), inside[slot])
            await release.wait()
            for _ in range(3):  # stay a little while others try to get in
                await asyncio.sleep(0)
            inside[slot] -= 1
    return [asyncio.create_task(one()) for _ in range(n)]


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_lane_lets_at_most_the_limit_in_per_slot(limit):
    gate = SoldOutGate(per_slot_concurrency=limit)
    a, b = _slot(), _slot()
    inside, peak, release = {}, {}, asyncio.Event()
    tasks = await _crowd(gate, a, 30, inside, peak, release) + await _crowd(gate, b, 30, inside, peak, release)
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside == {a: limit, b: limit}  # full, and each slot has its own lane
    release.set()
    await asyncio.gather(*tasks)
    assert peak == {a: limit, b: limit}
    assert inside == {a: 0, b: 0}
    assert gate._slots == {}  # no per-slot bookkeeping outlives its users


async def test_an_error_inside_the_lane_gives_the_place_back():
    gate = SoldOutGate(per_slot_concurrency=1)
    slot = _slot()
    with pytest.raises(RuntimeError):
        async with gate.slot_lane(slot):
            raise RuntimeError("claim failed")
    assert gate._slots == {}
    await asyncio.wait_for(_enter_and_leave(gate, slot), timeout=5)


async def _enter_and_leave(gate: SoldOutGate, slot: int) -> None:
    async with gate.slot_lane(slot):
        pass


async def _assert_lane_still_admits(gate: SoldOutGate, slot: int, limit: int) -> None:
    inside, peak, release = {}, {}, asyncio.Event()
    tasks = await _crowd(gate, slot, limit + 3, inside, peak, release)
    for _ in range(5):
        await asyncio.sleep(0)
    assert inside.get(slot, 0) == limit, "a place in the lane leaked"
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert gate._slots == {}


async def test_cancelled_waiters_do_not_leak_places_or_counters():
    gate = SoldOutGate(per_slot_concurrency=2)
    slot = _slot()
    inside, peak, release = {}, {}, asyncio.Event()
    holders = await _crowd(gate, slot, 2, inside, peak, release)
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(_enter_and_leave(gate, slot)) for _ in range(5)]
    for _ in range(3):
        await asyncio.sleep(0)
    for w in waiters:  # clients that hang up while queued
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert all(w.cancelled() for w in waiters)
    release.set()
    await asyncio.gather(*holders)
    assert gate._slots == {}
    await _assert_lane_still_admits(gate, slot, 2)


async def test_waiter_cancelled_just_as_it_is_woken_does_not_lose_the_place():
    """The hard case: a holder leaves (waking a waiter) and the waiter is cancelled in the same
    tick, before it runs. Its place must pass on, not vanish."""
    gate = SoldOutGate(per_slot_concurrency=1)
    slot = _slot()
    release = asyncio.Event()

    async def holder():
        async with gate.slot_lane(slot):
            await release.wait()

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    woken = asyncio.create_task(_enter_and_leave(gate, slot))
    behind = asyncio.create_task(_enter_and_leave(gate, slot))
    for _ in range(3):
        await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)  # the holder runs, leaves the lane and wakes `woken`
    woken.cancel()
    await asyncio.wait_for(asyncio.gather(h, behind), timeout=5)
    await asyncio.gather(woken, return_exceptions=True)
    assert gate._slots == {}
    await _assert_lane_still_admits(gate, slot, 1)


# --- tickets: only as many claimants as seats may be left ----------------------------------

async def _try_enter(gate: SoldOutGate, slot: int, outcome: list, release: asyncio.Event) -> None:
    from guahao.booking.gate import NoTicket

    try:
        async with gate.slot_lane(slot):
            outcome.append("in")
            await release.wait()
    except NoTicket:
        outcome.append("sold out")


async def test_without_an_estimate_everyone_queues_for_the_lane(mono):
    gate = SoldOutGate(per_slot_concurrency=2)
    slot, outcome, release = _slot(), [], asyncio.Event()
    tasks = [asyncio.create_task(_try_enter(gate, slot, outcome, release)) for _ in range(10)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert outcome == ["in", "in"] and len(gate._slots[slot].waiting) == 8
    release.set()
    await asyncio.gather(*tasks)
    assert outcome == ["in"] * 10 and gate._slots == {}


async def test_an_estimate_turns_away_the_claimants_past_the_seats_left(mono):
    """Three seats may be left after the winner's number: three may wait behind the running
    claims, and the others are answered at once instead of queueing behind the sell-out; the
    waiters past a smaller estimate are answered too, the latest arrivals first."""
    gate = SoldOutGate(per_slot_concurrency=2)
    slot, outcome, release = _slot(), [], asyncio.Event()
    queued = [asyncio.create_task(_try_enter(gate, slot, outcome, release)) for _ in range(6)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert outcome == ["in", "in"]  # no estimate yet: four wait
    gate.note_remaining(slot, 3)  # a claim won: at most 3 seats left after its number
    for _ in range(3):
        await asyncio.sleep(0)
    # the two running claims are not counted against the three seats: either may be taking a
    # seat below the winner's number (it locked it first); counting them left a seat unsold
    assert outcome == ["in", "in", "sold out"]
    assert len(gate._slots[slot].waiting) == 3  # the earliest waiters keep their turn
    late = asyncio.create_task(_try_enter(gate, slot, outcome, release))
    await asyncio.sleep(0)
    assert outcome[-1] == "sold out"  # arriving now: no ticket left
    release.set()
    await asyncio.gather(*queued, late)
    assert outcome.count("in") == 5


async def test_the_estimate_lasts_a_second_and_forget_drops_it(mono):
    gate = SoldOutGate(per_slot_concurrency=1)
    slot, outcome, release = _slot(), [], asyncio.Event()
    holder = asyncio.create_task(_try_enter(gate, slot, outcome, release))
    first = asyncio.create_task(_try_enter(gate, slot, outcome, release))
    for _ in range(3):
        await asyncio.sleep(0)
    gate.note_remaining(slot, 1)  # one seat may be left: one waiter may queue for it
    await _try_enter(gate, slot, outcome, release)
    assert outcome == ["in", "sold out"]
    mono.now += FULL_TTL_SECONDS  # a hold may have lapsed since: queue again, the database decides
    second = asyncio.create_task(_try_enter(gate, slot, outcome, release))
    await asyncio.sleep(0)
    assert outcome == ["in", "sold out"] and len(gate._slots[slot].waiting) == 2
    gate.note_remaining(slot, 1)
    assert outcome[-1] == "sold out"  # trimmed to one waiter again, the latest went
    await gate.forget(slot)  # a cancellation here: no estimate, everyone may queue
    third = asyncio.create_task(_try_enter(gate, slot, outcome, release))
    await asyncio.sleep(0)
    assert len(gate._slots[slot].waiting) == 2
    release.set()
    await asyncio.gather(holder, first, second, third)
    assert outcome.count("in") == 3


async def test_no_seat_left_by_the_estimate_lets_the_database_say_why(mono):
    """An estimate of 0 does not answer by itself: the slot may have been suspended since
    (停诊 says schedule_suspended, not sold out); the claim that finds nothing marks it full."""
    gate = SoldOutGate(per_slot_concurrency=2)
    slot, outcome, release = _slot(), [], asyncio.Event()
    release.set()
    gate.note_remaining(slot, 0)
    await _try_enter(gate, slot, outcome, release)
    assert outcome == ["in"]


async def test_marking_full_answers_every_waiter(mono):
    gate = SoldOutGate(per_slot_concurrency=1)
    slot, outcome, release = _slot(), [], asyncio.Event()
    tasks = [asyncio.create_task(_try_enter(gate, slot, outcome, release)) for _ in range(4)]
    for _ in range(3):
        await asyncio.sleep(0)
    await gate.mark_full(slot)
    for _ in range(3):
        await asyncio.sleep(0)
    assert outcome == ["in", "sold out", "sold out", "sold out"]
    release.set()
    await asyncio.gather(*tasks)


# --- shared through Redis -------------------------------------------------------------------

@pytest.fixture
async def redis_client():
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {exc}")
    yield client
    await client.aclose()


async def test_full_is_shared_between_processes_through_redis(redis_client, mono):
    one, two = SoldOutGate(REDIS_URL), SoldOutGate(REDIS_URL)  # two API processes
    slot = _slot()
    try:
        assert not await two.known_full(slot)
        await one.mark_full(slot)
        ttl = await redis_client.pttl(f"guahao:full:{slot}")
        assert 0 < ttl <= FULL_TTL_SECONDS * 1000  # Redis forgets on its own, like the memory
        assert await two.known_full(slot)
        await one.forget(slot)
        assert await redis_client.exists(f"guahao:full:{slot}") == 0
        three = SoldOutGate(REDIS_URL)
        assert not await three.known_full(slot)
        assert not await one.known_full(slot)
        await three._redis.aclose()
    finally:
        await redis_client.delete(f"guahao:full:{slot}")
        await one._redis.aclose()
        await two._redis.aclose()


async def test_a_full_seen_in_redis_is_remembered_locally_for_the_ttl(redis_client, mono):
    gate = SoldOutGate(REDIS_URL)
    slot = _slot()
    try:
        await redis_client.set(f"guahao:full:{slot}", 1, px=60_000)
        assert await gate.known_full(slot)
        await redis_client.delete(f"guahao:full:{slot}")
        assert await gate.known_full(slot)  # from memory: at most one TTL stale
        mono.now += FULL_TTL_SECONDS
        assert not await gate.known_full(slot)
    finally:
        await redis_client.delete(f"guahao:full:{slot}")
        await gate._redis.aclose()


async def test_a_full_read_from_redis_is_not_remembered_past_the_marks_ttl(redis_client, mono):
    gate = SoldOutGate(REDIS_URL)
    slot = _slot()
    try:
        # another process marked it 700 ms ago: 300 ms of its "full" are left
        await redis_client.set(f"guahao:full:{slot}", 1, px=300)
        assert await gate.known_full(slot)
        await asyncio.sleep(0.35)  # the key has lapsed in Redis too
        mono.now += 0.5  # 1.2 s after the mark: remembering a whole second would still say full
        assert not await gate.known_full(slot)
    finally:
        await redis_client.delete(f"guahao:full:{slot}")
        await gate._redis.aclose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when we return: nothing listens there


async def test_redis_down_falls_back_to_memory_without_error(mono):
    gate = SoldOutGate(f"redis://127.0.0.1:{_closed_port()}/0")
    a, b = _slot(), _slot()
    try:
        assert not await gate.known_full(a)  # unknown: let the database decide
        await gate.mark_full(a)
        assert await gate.known_full(a)  # the process still remembers on its own
        assert not await gate.known_full(b)
        await gate.forget(a)
        assert not await gate.known_full(a)
        async with gate.slot_lane(a):  # the lane never needed Redis
            pass
    finally:
        await gate._redis.aclose()
