"""The draw itself: reveal and rank, then allocate seats in rank order through booking's hold.

1. `do_rank` (one transaction, the draw row exclusive): once `result_at` has passed and the
   draw is open, compute root and seed (fairness.py), store every entry's rank and the seats
   left, reveal the secret (status `ranked`). From now on no entry can join (entries.py).
2. `do_allocate_chunk` (one transaction per CHUNK entries, the draw row exclusive first): the
   next entries without an outcome, in rank order. Each winner's seat is a normal hold
   (`booking.actions.do_hold(by_draw=True)`: every rule of a hold, the same seat claim, the
   normal pay window), tried in a SAVEPOINT so a refusal undoes only that entry's attempt:
   a person-level refusal (restricted, already booked that department that day, ...) makes
   the entry `skipped` with the refusal's code and the next rank gets the seat; no seat left
   makes it `lost`. Each outcome writes its notification (outbox, dedupe key per entry).
   Around the holds everything is batched (5,000 entries, 100 seats: tools/time_draw_job.py):
   ranks in one statement, free seats counted down in memory, a chunk's outcomes and
   messages written together at its end, the rest lost in one UPDATE and one insert.
3. The chunk that finds nothing left settles the draw (`allocated`), opens what is left of
   the schedule to holds (`drawn`) and hands the losers who opted in to the waitlist.

Idempotent and crash-safe: ranks are a pure function of the stored secret and receipts, an
entry's outcome is written in the same transaction as its hold, and every step starts from
the rows without an outcome. A process killed mid-chunk rolls that chunk back; a rerun (the
outbox redelivers `draw.run`, or the `draw.prepare` scan finds the draw due) continues with
the same order, so the result is the same as an uninterrupted run.
"""
from __future__ import annotations

import datetime as dt

import structlog
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking import actions as booking_actions
from guahao.core.errors import GuahaoError, NotFound
from guahao.draw import fairness
from guahao.draw.models import Draw, DrawEntry
from guahao.outbox import service as outbox
from guahao.scheduling import seats
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import actions as waitlist_actions

log = structlog.get_logger("guahao.draw")
CHUNK = 50
RESULT_TOPIC = "notify.draw_result"
# refusals that end the draw for everyone still unallocated (the schedule, not the person)
SCHEDULE_REFUSALS = {"schedule_suspended", "schedule_not_published", "booking_closed", "slot_not_bookable"}


async def _lock(session: AsyncSession, draw_id: int) -> Draw | None:
    return await session.scalar(select(Draw).where(Draw.id == draw_id).with_for_update()
                                .execution_options(populate_existing=True))


async def _platform_slots(session: AsyncSession, schedule_id: int) -> list[tuple[int, int]]:
    """(slot id, capacity) of the schedule's online slots, earliest first."""
    slots = await scheduling_service.list_slots(session, schedule_id, pool="platform")
    return [(s.id, s.capacity) for s in sorted(slots, key=lambda s: (s.starts_at, s.id))]


async def _free_seats(session: AsyncSession, slots: list[tuple[int, int]], now: dt.datetime) -> dict[int, int]:
    taken = await seats.taken_counts(session, [sid for sid, _ in slots], now)
    return {sid: cap - taken.get(sid, 0) for sid, cap in slots}


async def _write_ranks(session: AsyncSession, entry_ids: list[int]) -> None:
    """rank = position in `entry_ids` (first = 1). PostgreSQL: one UPDATE joined to the two
    arrays unnested; SQLite (in-process, no round trips): the executemany by primary key."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text(f"UPDATE {DrawEntry.__tablename__} AS e SET rank = v.rank FROM "
                                   "unnest(CAST(:ids AS bigint[]), CAST(:ranks AS integer[])) AS v(id, rank) "
                                   "WHERE e.id = v.id"),
                              {"ids": entry_ids, "ranks": list(range(1, len(entry_ids) + 1))})
    else:
        await session.execute(update(DrawEntry), [{"id": e, "rank": i} for i, e in enumerate(entry_ids, 1)])


async def do_rank(session: AsyncSession, draw_id: int, *, now: dt.datetime) -> bool:
    """Reveal and rank (see the module docstring); False when not due or done already."""
    draw = await _lock(session, draw_id)
    if draw is None or draw.status != "open" or now < draw.result_at:
        return False
    rows = (await session.execute(select(DrawEntry.id, DrawEntry.receipt).where(DrawEntry.draw_id == draw.id))).all()
    by_receipt = {receipt: entry_id for entry_id, receipt in rows}
    draw.root = fairness.entries_root(by_receipt)
    draw.seed = fairness.seed(draw.secret, draw.root, draw.id)
    order = fairness.ranked(draw.seed, by_receipt)
    if order:
        await _write_ranks(session, [by_receipt[r] for r in order])
    free = await _free_seats(session, await _platform_slots(session, draw.schedule_id), now)
    draw.seats = sum(max(n, 0) for n in free.values())
    draw.status, draw.ranked_at = "ranked", now
    return True


async def _hold_for(session: AsyncSession, entry, slot_ids: list[int], now: dt.datetime):
    """Try the entry's hold on each slot with a free seat, earliest first. Returns ((booking
    id, visit no, state, slot id), None), (None, refusal code) or (None, "no_seat")."""
    for slot_id in slot_ids:
        try:
            async with session.begin_nested():
                booking = await booking_actions.do_hold(session, account_id=entry.account_id,
                                                        patient_id=entry.patient_id, slot_id=slot_id, now=now,
                                                        by_draw=True)
                return (booking.id, booking.visit_no, booking.state, slot_id), None
        except GuahaoError as exc:
            if exc.code == "slot_sold_out":
                continue
            return None, ("patient_removed" if isinstance(exc, NotFound) else exc.code)
    return None, "no_seat"


class _Outcomes:
    """A chunk's outcomes, written together (one UPDATE executed for all, one outbox insert)
    before the chunk ends or the rest is decided; the same transaction as the holds."""

    def __init__(self, draw: Draw) -> None:
        self.draw, self.rows, self.messages = draw, [], []

    def add(self, entry_id: int, outcome: str, *, reason: str | None = None, booking: tuple | None = None) -> None:
        self.rows.append({"b_id": entry_id, "b_outcome": outcome, "b_reason": reason,
                          "b_booking": booking[0] if booking else None, "b_visit": booking[1] if booking else None})
        if booking is not None and booking[2] == "confirmed":
            return  # a free registration: the booking's own confirmation SMS says it all
        self.messages.append(_message(self.draw, entry_id))

    async def write(self, session: AsyncSession, now: dt.datetime) -> None:
        if self.rows:
            t = DrawEntry.__table__
            await session.execute(update(t).where(t.c.id == bindparam("b_id"), t.c.outcome.is_(None)).values(
                outcome=bindparam("b_outcome"), reason=bindparam("b_reason"), booking_id=bindparam("b_booking"),
                visit_no=bindparam("b_visit")), self.rows)
        await outbox.enqueue_many(session, self.messages, now=now)
        self.rows, self.messages = [], []


def _message(draw: Draw, entry_id: int) -> dict:
    return {"topic": RESULT_TOPIC, "dedupe_key": f"{RESULT_TOPIC}:{entry_id}",
            "payload": {"entry_id": entry_id, "hospital_id": draw.hospital_id}, "hospital_id": draw.hospital_id}


async def do_allocate_chunk(session: AsyncSession, draw_id: int, *, now: dt.datetime, limit: int | None = None) -> int:
    """Decide the next `limit` (CHUNK) entries in rank order; 0 when the draw is (now) allocated.

    Free seats are read once and counted down per winner (one hold takes one seat); when the
    count says none is left they are read again (a winner may have cancelled meanwhile), and
    only then is the rest lost. A count too high costs nothing: the hold finds the slot
    sold out and the next slot (or no seat) is tried, as before."""
    limit = limit or CHUNK
    draw = await _lock(session, draw_id)
    if draw is None or draw.status != "ranked":
        return 0
    entries = (await session.execute(
        select(DrawEntry.id, DrawEntry.account_id, DrawEntry.patient_id).where(
            DrawEntry.draw_id == draw.id, DrawEntry.outcome.is_(None)).order_by(DrawEntry.rank).limit(limit))).all()
    if not entries:
        await _settle(session, draw, now)
        return 0
    slots = await _platform_slots(session, draw.schedule_id)
    free = await _free_seats(session, slots, now)
    decided = _Outcomes(draw)
    for entry in entries:
        open_slots = [sid for sid, _ in slots if free.get(sid, 0) > 0]
        if not open_slots:
            free = await _free_seats(session, slots, now)
            open_slots = [sid for sid, _ in slots if free.get(sid, 0) > 0]
        if not open_slots:
            await decided.write(session, now)
            return await _lose_the_rest(session, draw, "no_seat", now)
        booking, refusal = await _hold_for(session, entry, open_slots, now)
        if booking is not None:
            decided.add(entry.id, "won", booking=booking)
            free[booking[3]] -= 1
        elif refusal == "no_seat" or refusal in SCHEDULE_REFUSALS:
            await decided.write(session, now)
            return await _lose_the_rest(session, draw, refusal, now)
        else:
            decided.add(entry.id, "skipped", reason=refusal)
    await decided.write(session, now)
    return len(entries)


async def _lose_the_rest(session: AsyncSession, draw: Draw, reason: str, now: dt.datetime) -> int:
    """No later rank can get a seat: every entry still without an outcome lost, with its
    message, in two statements (thousands of entrants, a hundred seats)."""
    ids = list(await session.scalars(
        update(DrawEntry).where(DrawEntry.draw_id == draw.id, DrawEntry.outcome.is_(None))
        .values(outcome="lost", reason=reason).returning(DrawEntry.id)
        .execution_options(synchronize_session=False)))
    await outbox.enqueue_many(session, [_message(draw, i) for i in ids], now=now)
    return max(len(ids), 1)


async def _settle(session: AsyncSession, draw: Draw, now: dt.datetime) -> None:
    draw.status, draw.allocated_at = "allocated", now
    await scheduling_service.set_release_mode(session, draw.schedule_id, "drawn", now=now)
    losers = [(row.account_id, row.patient_id) for row in (await session.execute(
        select(DrawEntry.account_id, DrawEntry.patient_id).where(
            DrawEntry.draw_id == draw.id, DrawEntry.outcome == "lost", DrawEntry.waitlist_opt_in.is_(True))
        .order_by(DrawEntry.rank))).all()]
    await _enqueue_losers(session, draw.schedule_id, losers, now)


async def _enqueue_losers(session: AsyncSession, schedule_id: int, ranked: list[tuple[int, int]],
                          now: dt.datetime) -> None:
    """候补 for the draw's losers: the (account, patient) pairs who opted in and lost for want
    of a seat (never a skipped, ineligible one), in draw rank, join the schedule's waitlist in
    that order (waitlist.actions.do_join_ranked). Runs in the transaction that settles the
    draw, after every seat was allocated, so an offer can only concern a seat freed later. An
    entrant the waitlist refuses (its K limit, say) is left out; the rest keep their order.
    A queue that takes nobody (the hospital's waitlist off, the schedule suspended, past its
    cutoff) queues no one, in a SAVEPOINT: the draw settles all the same, else the schedule
    would stay in draw mode, refusing every hold, and every rerun would fail the same way."""
    if not ranked:
        return
    try:
        async with session.begin_nested():
            await waitlist_actions.do_join_ranked(session, schedule_id=schedule_id, entrants=ranked, now=now)
    except GuahaoError as exc:
        log.warning("draw_losers_not_queued", schedule_id=schedule_id, losers=len(ranked), code=exc.code)


async def run(db, draw_id: int, *, now_fn) -> str:
    """Rank, then allocate chunk by chunk, each in its own transaction. Returns the draw's
    status at the end. `now_fn` is the clock (every transaction takes its own now)."""
    async with db.begin() as session:
        await do_rank(session, draw_id, now=now_fn())
    while True:
        async with db.begin() as session:
            if await do_allocate_chunk(session, draw_id, now=now_fn()) == 0:
                break
    async with db.read() as session:
        return await session.scalar(select(Draw.status).where(Draw.id == draw_id)) or "missing"
