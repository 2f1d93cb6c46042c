"""The admission gate in front of the hold transaction during a release rush.

Three things keep the database calm, and the losers answered at once, when thousands of
patients press "book" at 08:00:
- a negative cache: once a claim finds a slot full, the slot is remembered as full for at
  most one second, and requests for it are answered `slot_sold_out` without a hold
  transaction. Per process in memory, and shared through Redis when configured. A stale
  "full" lasts at most a second; a stale "available" is harmless because the database decides.
- tickets: every won claim tells the gate how many seats of the slot can still be free at
  most (the seats after the visit number just given: seats go lowest free number first). For
  a second after, only that many requests of this process may wait for a claim; the rest are
  answered `slot_sold_out` at once instead of queueing behind the sell-out to learn it. The
  claims already running are not counted against it: one of them may be taking a seat below
  the number just given (it locked that seat first, so the winner skipped it), and counting
  it left a seat unsold while the next patient was refused. The estimate is an upper bound, so no request is turned away while more seats are free
  than this process has claimants; if a claimant then fails (a rule refused it), its seat is
  claimable by the next arrival. Each process may admit the whole estimate: splitting it
  between worker processes left seats unsold when the last patients of a rush happened to
  reach one process (measured: 78 of 100 sold at 4 workers).
- a lane: at most `per_slot_concurrency` claim transactions per slot in this process; the
  ticket holders wait here, in the application, instead of queuing on the hot rows.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from guahao.core import metrics

FULL_TTL_SECONDS = 1.0


class SoldOutGate:
    def __init__(self, redis_url: str | None = None, *, per_slot_concurrency: int = 2, max_slots: int = 50_000) -> None:
        self._full: OrderedDict[int, float] = OrderedDict()
        self._slots: dict[int, _SlotState] = {}
        self._per_slot = per_slot_concurrency
        self._max = max_slots
        self._redis = None
        if redis_url:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError

            # one immediate retry on a broken connection: after Redis restarts, the first
            # command on a pooled connection fails, and without the retry that "full" mark was
            # lost (tests/test_redis_loss.py); a Redis that is really down refuses at once
            self._redis = aioredis.from_url(redis_url, socket_timeout=0.2, socket_connect_timeout=0.2,
                                            retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])

    @metrics.counted_gate
    async def known_full(self, slot_id: int) -> bool:
        until = self._full.get(slot_id)
        if until is not None:
            if until > time.monotonic():
                return True
            self._full.pop(slot_id, None)
        if self._redis is not None:
            try:
                # remember another process's "full" only for what is left of its TTL, so a
                # mark is answered at most FULL_TTL_SECONDS after it was made, wherever
                left_ms = await self._redis.pttl(f"guahao:full:{slot_id}")
                if left_ms > 0:
                    self._remember(slot_id, ttl=left_ms / 1000)
                    return True
            except Exception:  # Redis is an optimisation: without it the database decides
                return False
        return False

    async def mark_full(self, slot_id: int) -> None:
        self._remember(slot_id)
        self.note_remaining(slot_id, 0)
        if self._redis is not None:
            try:
                await self._redis.set(f"guahao:full:{slot_id}", 1, px=int(FULL_TTL_SECONDS * 1000))
            except Exception:
                pass

    async def forget(self, slot_id: int) -> None:
        """A seat came back (cancellation): let requests through again at once."""
        self._full.pop(slot_id, None)
        state = self._slots.get(slot_id)
        if state is not None:
            state.estimate = None
            self._drop_if_idle(slot_id, state)
        if self._redis is not None:
            try:
                await self._redis.delete(f"guahao:full:{slot_id}")
            except Exception:
                pass

    def _remember(self, slot_id: int, ttl: float = FULL_TTL_SECONDS) -> None:
        self._full[slot_id] = time.monotonic() + min(ttl, FULL_TTL_SECONDS)
        self._full.move_to_end(slot_id)
        while len(self._full) > self._max:
            self._full.popitem(last=False)

    def refuses_now(self, slot_id: int) -> bool:
        """Whether a request arriving now would be answered `NoTicket` at once by the lane
        (the seats left all have claimants): the fast path (booking/fast_path.py) answers it."""
        state = self._slots.get(slot_id)
        if state is None:
            return False
        share = self._share(state)
        return bool(share) and len(state.waiting) >= share

    def slot_lane(self, slot_id: int) -> _Lane:
        return _Lane(self, slot_id)

    # --- tickets and the lane ------------------------------------------------------------------

    def note_remaining(self, slot_id: int, seats: int) -> None:
        """A claim just won: at most `seats` seats of the slot can still be free. Waiters past
        them are answered at once (`NoTicket`)."""
        state = self._slots.get(slot_id)
        if state is None:
            state = self._slots[slot_id] = _SlotState()
        state.estimate, state.estimate_until = max(0, seats), time.monotonic() + FULL_TTL_SECONDS
        self._trim(state)
        self._wake(state)
        self._drop_if_idle(slot_id, state)
        if len(self._slots) > self._max:  # slots nobody asks for any more keep no state
            for idle in [k for k, v in self._slots.items() if not v.running and not v.waiting
                         and self._share(v) is None]:
                del self._slots[idle]

    def _share(self, state: _SlotState) -> int | None:
        """Claimants this process may have for the slot now; None: no fresh estimate."""
        if state.estimate is None or state.estimate_until <= time.monotonic():
            state.estimate = None
            return None
        return state.estimate

    def _trim(self, state: _SlotState) -> None:
        share = self._share(state)
        if share is None:
            return
        while len(state.waiting) > share:
            late = state.waiting.pop()  # the latest arrivals go first; the earlier keep their turn
            if not late.done():
                late.set_result(False)

    def _wake(self, state: _SlotState) -> None:
        while state.waiting and state.running < self._per_slot:
            turn = state.waiting.popleft()
            if not turn.done():
                state.running += 1
                turn.set_result(True)

    def _drop_if_idle(self, slot_id: int, state: _SlotState) -> None:
        if not state.running and not state.waiting and state.estimate is None:
            self._slots.pop(slot_id, None)

    async def _enter(self, slot_id: int) -> None:
        state = self._slots.get(slot_id)
        if state is None:
            state = self._slots[slot_id] = _SlotState()
        share = self._share(state)
        # no seat left by the estimate: let the database say why (full, or suspended since):
        # a claim that finds nothing marks the slot full (mark_full) for every later arrival
        if share and len(state.waiting) >= share:
            self._drop_if_idle(slot_id, state)
            raise NoTicket()
        if state.running < self._per_slot and not state.waiting:
            state.running += 1
            return
        turn = asyncio.get_running_loop().create_future()
        state.waiting.append(turn)
        try:
            granted = await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.result():
                self._leave(slot_id)  # woken and cancelled in the same tick: pass the place on
            else:
                try:
                    state.waiting.remove(turn)
                except ValueError:
                    pass
                self._drop_if_idle(slot_id, state)
            raise
        if not granted:
            self._drop_if_idle(slot_id, state)
            raise NoTicket()

    def _leave(self, slot_id: int) -> None:
        state = self._slots[slot_id]
        state.running -= 1
        self._wake(state)
        self._drop_if_idle(slot_id, state)


class NoTicket(Exception):
    """Every seat that may still be free has a claimant in this process: answer sold out."""


@dataclass
class _SlotState:
    running: int = 0  # claim transactions in the lane now
    waiting: deque = field(default_factory=deque)  # futures of the ticket holders queued, FIFO
    estimate: int | None = None  # at most this many seats free (from the last won claim)
    estimate_until: float = 0.0


class _Lane:
    """`async with gate.slot_lane(slot_id):` one claim transaction of the slot; raises
    `NoTicket` at once, or while queued, when the seats left all have claimants."""

    def __init__(self, gate: SoldOutGate, slot_id: int) -> None:
        self._gate, self._slot_id = gate, slot_id

    async def __aenter__(self) -> None:
        await self._gate._enter(self._slot_id)

    async def __aexit__(self, *exc) -> None:
        self._gate._leave(self._slot_id)
