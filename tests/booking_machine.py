"""The booking state machine and its reference model (used by tests/test_booking_stateful.py).

A hypothesis state machine drives the booking actions across the time rules: holds,
confirmations, cancellations either side of the cancellation deadline, check-in, completion,
停诊, the expiry sweep and no-show marking, while the clock jumps onto and either side of
every deadline (hold deadline, cancellation deadline, booking close, period end) of visits
1-3 days ahead. A reference model predicts every answer, the strikes and the restrictions
they cause; after every step the database is checked against the model and against I1-I4
(on SQLite and on PostgreSQL).

Which cancellations strike lives in one function, `cancellation_is_strike`, matching the
hospital's `strike_cancellations` rule the machine runs under.
"""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import func, select, text

from guahao.booking import actions, hospital_actions
from guahao.booking.lifecycle import Actor
from guahao.booking.models import Booking, BookingEvent, Restriction
from guahao.core.clock import SHANGHAI, FrozenClock
from guahao.core.db import create_database
from guahao.core.errors import GuahaoError
from guahao.models import Base
from guahao.scheduling.models import SlotPosition
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import make_account, make_department, make_hospital

UTC = dt.UTC
START = dt.datetime(2026, 11, 19, 2, 0, tzinfo=UTC)  # Thursday 10:00 in Shanghai
LIVE = ("held", "confirmed", "checked_in", "completed")
HOLD = dt.timedelta(minutes=30)
THRESHOLD, WINDOW, BARRED = 2, dt.timedelta(days=30), dt.timedelta(days=30)
MAX_LIVE = 2
# what the runs reached (answers, transitions, restrictions): the test asserts the machine
# keeps reaching the time rules it claims to cover
REACHED: Counter[str] = Counter()
# (days ahead, department, capacity, free): visits tomorrow to three days ahead
SCHEDULES = ((1, 0, 2, False), (1, 1, 1, True), (2, 0, 1, True), (3, 0, 2, False))


def cancellation_is_strike(from_state: str) -> bool:
    """The machine's hospital keeps the default `strike_cancellations = 'all'`: cancelling a
    hold counts toward a restriction as much as cancelling a confirmed booking (the seed's
    "3 cancelled orders in a month"); no-shows always count."""
    return from_state in ("held", "confirmed")


def _local(day: dt.date, hour: int) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour), tzinfo=SHANGHAI).astimezone(UTC)


def build_machine(database_url: str):
    class BookingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = FrozenClock(START)
            self.db = create_database(database_url, pool_size=2)
            self.bookings: dict[int, dict] = {}  # id -> state, deadline, schedule, person, account, strike
            self.strikes: dict[str, list[dt.datetime]] = {}
            self.restrictions: dict[str, list[tuple[dt.datetime, dt.datetime]]] = {}
            self.run(self._setup())

        def run(self, coro):
            return self.loop.run_until_complete(coro)

        async def _setup(self) -> None:
            async with self.db.begin() as s:
                for table in reversed(Base.metadata.sorted_tables):
                    await s.execute(text(f'DELETE FROM "{table.name}"'))
            now = self.clock.now()
            self.hospital = await make_hospital(self.db, now, restriction_threshold=THRESHOLD, hold_minutes=30,
                                                max_live_bookings_per_person=MAX_LIVE)
            deps = [await make_department(self.db, self.hospital, name=n) for n in ("内科", "外科")]
            self.schedules = []
            for ahead, dep, cap, free in SCHEDULES:
                day = START.astimezone(SHANGHAI).date() + dt.timedelta(days=ahead)
                fees = {"registration_fee": 0, "consultation_fee": 0} if free else {}
                sid, slots = await make_schedule(self.db, now, hospital_id=self.hospital, department_id=deps[dep],
                                                 doctor_id=None, day=day, capacity=cap, **fees)
                self.schedules.append({
                    "id": sid, "slot": slots[0], "capacity": cap, "dep": dep, "day": day, "free": free,
                    "suspended": False, "cancel_deadline": _local(day, 0), "closes_at": _local(day, 8),
                    "ends_at": _local(day, 12)})
            shared = make_id_number()
            self.holders = []  # (account id, patient id, person): holders 0 and 1 are one person
            for i in range(4):
                account_id, _ = await make_account(self.db, now)
                number = shared if i < 2 else make_id_number()
                patient = await make_patient(self.db, now, account_id, id_number=number)
                self.holders.append((account_id, patient, number))

        def teardown(self) -> None:
            self.run(self.db.dispose())
            self.loop.close()

        # --- the reference model ---
        def effective(self, b: dict) -> str:
            if b["state"] == "held" and b["deadline"] <= self.clock.now():
                return "expired"
            return b["state"]

        def settle(self) -> None:
            for b in self.bookings.values():
                b["state"] = self.effective(b)

        def restricted(self, person: str, now: dt.datetime) -> bool:
            return any(until > now for _, until in self.restrictions.get(person, []))

        def strike(self, b: dict, now: dt.datetime) -> None:
            """One strike, and a restriction if it reaches the threshold (strikes already behind
            an earlier restriction do not count again; none is added while one runs)."""
            b["strike"] = True
            person = b["person"]
            self.strikes.setdefault(person, []).append(now)
            if self.restricted(person, now):
                return
            starts = [s for s, _ in self.restrictions.get(person, [])]
            since = max([now - WINDOW, *starts])
            if sum(1 for t in self.strikes[person] if t > since) >= THRESHOLD:
                self.restrictions.setdefault(person, []).append((now, now + BARRED))
                REACHED["restriction"] += 1

        def hold_outcomes(self, person: str, sch: dict) -> set[str | None]:
            """The answers a hold may get (None = success), in the order the checks run."""
            now = self.clock.now()
            if sch["suspended"]:
                return {"schedule_suspended"}
            if now >= sch["closes_at"]:
                return {"booking_closed"}
            if self.restricted(person, now):
                return {"restricted_until"}
            mine = [(b, self.schedules[b["schedule"]]) for b in self.bookings.values()
                    if b["person"] == person and self.effective(b) in LIVE]
            taken = sum(1 for b in self.bookings.values() if b["schedule"] == sch["index"] and self.effective(b) in LIVE)
            outcomes = set()
            # "live" for the duplicate check and the per-person limit: today's code counts held
            # and confirmed only, DESIGN I1 also checked_in and completed (a unique index makes
            # a duplicate of those a duplicate_booking too); either definition is accepted.
            for states in (("held", "confirmed"), LIVE):
                counted = [(b, s) for b, s in mine if self.effective(b) in states]
                if any(s["dep"] == sch["dep"] and s["day"] == sch["day"] for _, s in counted):
                    outcomes.add("duplicate_booking")
                elif len(counted) >= MAX_LIVE:
                    outcomes.add("too_many_bookings")
                elif any(s["dep"] == sch["dep"] and s["day"] == sch["day"] for _, s in mine):
                    outcomes.add("duplicate_booking")
                elif taken >= sch["capacity"]:
                    outcomes.add("slot_sold_out")
                else:
                    outcomes.add(None)
            return outcomes

        async def _do(self, fn):
            try:
                async with self.db.begin() as s:
                    return await fn(s)
            except GuahaoError as exc:
                return exc

        def pick(self, data) -> tuple[int, dict]:
            bid = data.draw(st.sampled_from(sorted(self.bookings)))
            return bid, self.bookings[bid]

        # --- patient rules ---
        @rule(holder=st.integers(0, 3), data=st.data(), pay_now=st.booleans())
        def hold(self, holder, data, pay_now):
            # mostly a schedule still open for booking, sometimes any (for the refusals)
            now = self.clock.now()
            open_ = [i for i, sch in enumerate(self.schedules) if not sch["suspended"] and now < sch["closes_at"]]
            anyone = range(len(self.schedules))
            which = data.draw(st.sampled_from(open_ if open_ and data.draw(st.integers(0, 4)) else anyone))
            self.hold_one(holder, which, pay_now)

        def hold_one(self, holder: int, which: int, pay_now: bool) -> int | None:
            account_id, patient_id, person = self.holders[holder]
            sch = {**self.schedules[which], "index": which}
            now = self.clock.now()
            expected = self.hold_outcomes(person, sch)
            result = self.run(self._do(lambda s: actions.do_hold(s, account_id=account_id, patient_id=patient_id,
                                                                 slot_id=sch["slot"], now=now)))
            got = result.code if isinstance(result, GuahaoError) else None
            assert got in expected, (got, expected)
            REACHED[f"hold:{got or 'ok'}"] += 1
            if got is None:
                assert result.state == ("confirmed" if sch["free"] else "held")
                assert result.hold_expires_at == (None if sch["free"] else now + HOLD)
                self.settle()
                self.bookings[result.id] = {"state": result.state, "deadline": result.hold_expires_at,
                                            "schedule": which, "person": person, "account": account_id,
                                            "strike": False}
                if pay_now and result.state == "held":  # the patient pays at once
                    self._confirm(result.id)
                return result.id
            return None

        @precondition(lambda self: any(self.effective(b) == "held" for b in self.bookings.values()))
        @rule(data=st.data())
        def pay(self, data):
            """The payment of a running hold arrives (the success path of `confirm`)."""
            self.confirm(data, only="held")

        @precondition(lambda self: self.bookings)
        @rule(data=st.data())
        def confirm(self, data, only: str | None = None):
            if only:
                bid = data.draw(st.sampled_from(sorted(i for i, b in self.bookings.items()
                                                       if self.effective(b) == only)))
            else:
                bid = self.pick(data)[0]
            self._confirm(bid)

        def _confirm(self, bid: int) -> None:
            b = self.bookings[bid]
            state = self.effective(b)
            result = self.run(self._do(lambda s: actions.do_confirm(s, bid, now=self.clock.now())))
            REACHED[f"confirm:{state}"] += 1
            if state == "held":
                assert not isinstance(result, GuahaoError), result
                b["state"] = "confirmed"
            elif state == "expired":  # I4: hold_expired, or invalid_state once recorded as expired
                assert isinstance(result, GuahaoError) and result.code in ("hold_expired", "invalid_state"), result
            else:
                assert isinstance(result, GuahaoError) and result.code == "invalid_state", result

        @precondition(lambda self: self.bookings)
        @rule(data=st.data())
        def cancel(self, data):
            self.cancel_one(self.pick(data)[0])

        def cancel_one(self, bid: int) -> None:
            b = self.bookings[bid]
            now, state = self.clock.now(), self.effective(b)
            sch = self.schedules[b["schedule"]]
            result = self.run(self._do(lambda s: actions.do_cancel(s, account_id=b["account"], booking_id=bid,
                                                                   now=now)))
            got = result.code if isinstance(result, GuahaoError) else result.state
            if state == "expired":
                expected = "expired"  # the hold lapsed on its own: what the patient wanted
            elif state == "held" or (state == "confirmed" and now < sch["cancel_deadline"]):
                expected = "cancelled"
            elif state == "confirmed":
                expected = "cancel_deadline_passed"
            else:
                expected = "invalid_state"
            assert got == expected, (bid, state, got, expected)
            REACHED[f"cancel:{state}:{expected}"] += 1
            b["state"] = state
            if expected == "cancelled":
                b["state"] = "cancelled"
                if cancellation_is_strike(state):
                    self.strike(b, now)

        # --- hospital rules ---
        @precondition(lambda self: self.bookings)
        @rule(data=st.data())
        def check_in(self, data):
            now = self.clock.now()
            confirmed = sorted(i for i, b in self.bookings.items() if b["state"] == "confirmed")
            today = [i for i in confirmed if self.checkable(self.schedules[self.bookings[i]["schedule"]], now)]
            confirmed = today or confirmed  # mostly one whose visit day has come, else any
            if confirmed and data.draw(st.booleans()):
                bid = data.draw(st.sampled_from(confirmed))
                b = self.bookings[bid]
            else:
                bid, b = self.pick(data)
            self.check_in_one(bid)

        def check_in_one(self, bid: int) -> None:
            b = self.bookings[bid]
            now, sch = self.clock.now(), self.schedules[b["schedule"]]

            async def work(s):
                booking = await hospital_actions.find_for_hospital(s, hospital_id=self.hospital, booking_id=bid)
                return await hospital_actions.do_check_in(s, booking, actor=Actor.system(), now=now)
            result = self.run(self._do(work))
            allowed = self.effective(b) == "confirmed" and self.checkable(sch, now)
            REACHED[f"check_in:{allowed}"] += 1
            if allowed:
                assert not isinstance(result, GuahaoError), result
                b["state"] = "checked_in"
            else:
                assert isinstance(result, GuahaoError) and result.code == "check_in_refused", result

        @staticmethod
        def checkable(sch: dict, now: dt.datetime) -> bool:
            return now.astimezone(SHANGHAI).date() == sch["day"] and now < sch["ends_at"]

        @rule(minutes=st.integers(-60, 60), data=st.data())
        def visit_morning(self, minutes, data):
            """The clock moves to around 09:00 of the next visit day (the period runs 08:00-12:00)
            and patients with confirmed bookings that day may arrive and check in."""
            if not self.to_next_morning(minutes):
                return
            for bid in sorted(self.bookings):
                if self.bookings[bid]["state"] == "confirmed" and data.draw(st.booleans()):
                    self.check_in_one(bid)

        def to_next_morning(self, minutes: int) -> bool:
            now = self.clock.now()
            ahead = sorted(m for m in (_local(sch["day"], 9) + dt.timedelta(minutes=minutes) for sch in self.schedules)
                           if m > now)
            if ahead:
                self.clock.set(ahead[0])
            return bool(ahead)

        @precondition(lambda self: any(b["state"] == "checked_in" for b in self.bookings.values()))
        @rule(data=st.data())
        def complete(self, data):
            self.complete_one(data.draw(st.sampled_from(sorted(i for i, b in self.bookings.items()
                                                               if b["state"] == "checked_in"))))

        def complete_one(self, bid: int) -> None:

            async def work(s):
                booking = await hospital_actions.find_for_hospital(s, hospital_id=self.hospital, booking_id=bid)
                return await hospital_actions.do_complete(s, booking, actor=Actor.system(), now=self.clock.now())
            result = self.run(self._do(work))
            assert not isinstance(result, GuahaoError), result
            REACHED["complete"] += 1
            self.bookings[bid]["state"] = "completed"

        @rule(which=st.integers(0, len(SCHEDULES) - 1), dice=st.integers(0, 9))
        def suspend(self, which, dice):
            if not dice:  # 停诊 ends a schedule's story, so let it happen rarely
                self.suspend_one(which)

        def suspend_one(self, which: int) -> None:
            sch = self.schedules[which]
            result = self.run(self._do(lambda s: hospital_actions.do_suspend(
                s, schedule_id=sch["id"], hospital_id=self.hospital, reason="停诊", actor=Actor.system(),
                now=self.clock.now())))
            expected = []
            if not sch["suspended"]:
                self.settle()
                for bid, b in sorted(self.bookings.items()):
                    if b["schedule"] == which and b["state"] in ("held", "confirmed"):
                        b["state"] = "revoked"
                        expected.append(bid)
            assert [b.id for b in result] == expected
            REACHED["revoked"] += len(expected)
            sch["suspended"] = True

        @rule()
        def sweep(self):
            now = self.clock.now()
            result = self.run(self._do(lambda s: actions.do_expire_due(s, now=now)))
            # other actions record some lapses on the way (a claimer takes over a lapsed seat),
            # so the count is at most the lapses the model knows of; none may be left behind
            assert result <= sum(1 for b in self.bookings.values() if self.effective(b) == "expired")
            left = self.run(self._count_unrecorded_lapses(now))
            assert left == 0, left
            self.settle()

        async def _count_unrecorded_lapses(self, now: dt.datetime) -> int:
            async with self.db.read() as s:
                return await s.scalar(select(func.count()).select_from(Booking).where(
                    Booking.state == "held", Booking.hold_expires_at <= now))

        @rule(offset=st.sampled_from([0, 1]))
        def period_over(self, offset):
            """The no-show job runs as (or just after) the next period ends."""
            self._jump([sch["ends_at"] for sch in self.schedules], offset)
            self.mark_no_shows()

        @rule()
        def mark_no_shows(self):
            now = self.clock.now()
            result = self.run(self._do(lambda s: hospital_actions.do_mark_no_shows(s, now=now)))
            self.settle()
            due = [b for _, b in sorted(self.bookings.items())
                   if b["state"] == "confirmed" and self.schedules[b["schedule"]]["ends_at"] <= now]
            assert result == len(due)
            REACHED["no_show"] += len(due)
            for b in due:  # one at a time in booking order, as the job does
                b["state"] = "no_show"
                self.strike(b, now)

        # --- time ---
        @rule(minutes=st.integers(1, 20))
        def advance(self, minutes):
            self.clock.advance(minutes=minutes)

        @rule(offset=st.sampled_from([-1, 0, 1]), pay=st.booleans())
        def jump_to_hold_deadline(self, offset, pay):
            """Onto (or a second either side of) the next running hold's deadline, where its
            payment may arrive (I4: from the deadline on it must be refused)."""
            held = sorted((b["deadline"], i) for i, b in self.bookings.items() if self.effective(b) == "held")
            self._jump([d for d, _ in held], offset)
            if held and pay:
                self._confirm(held[0][1])

        @rule(offset=st.sampled_from([-1, 0, 1]))
        def jump_to_next_rule_time(self, offset):
            """Onto (or a second either side of) the next cancellation deadline (also the start of
            the visit day), booking close or period end of any schedule."""
            self._jump([t for sch in self.schedules for t in (sch["cancel_deadline"], sch["closes_at"], sch["ends_at"])],
                       offset)

        def _jump(self, marks: list[dt.datetime], offset: int) -> None:
            now, delta = self.clock.now(), dt.timedelta(seconds=offset)
            ahead = sorted(m + delta for m in marks if m + delta > now)
            if ahead:
                self.clock.set(ahead[0])

        # --- invariants, read from the database ---
        @invariant()
        def invariants_hold(self):
            self.run(self._check())

        async def _check(self) -> None:
            now = self.clock.now()
            async with self.db.read() as s:
                bookings = {b.id: b for b in await s.scalars(select(Booking))}
                seats = list(await s.scalars(select(SlotPosition)))
                events = list(await s.scalars(select(BookingEvent).where(BookingEvent.to_state == "confirmed",
                                                                         BookingEvent.from_state == "held")))
                restrictions = list(await s.scalars(select(Restriction).order_by(Restriction.id)))
            eff = {i: "expired" if b.state == "held" and b.hold_expires_at <= now else b.state
                   for i, b in bookings.items()}
            live = [b for i, b in bookings.items() if eff[i] in LIVE]
            for sch in self.schedules:  # I1: never more live bookings than seats
                mine = {b.id for b in live if b.slot_id == sch["slot"]}
                assert len(mine) <= sch["capacity"]
                rows = [p for p in seats if p.slot_id == sch["slot"]]
                assert len(rows) == sch["capacity"]
                taken = {p.booking_id for p in rows if p.booking_id is not None
                         and (p.hold_expires_at is None or p.hold_expires_at > now)}
                # a seat is occupied by exactly the live bookings (a no-show keeps its number)
                assert mine <= taken and all(eff[i] == "no_show" for i in taken - mine), (mine, taken)
            visit = [(b.schedule_id, b.visit_no) for b in live]  # I2
            assert len(visit) == len(set(visit))
            people = [(b.person_id, b.department_id, b.visit_date) for b in live]  # I3
            assert len(people) == len(set(people))
            for e in events:  # I4: confirmed only while the hold ran
                assert e.at < bookings[e.booking_id].hold_expires_at
            assert set(bookings) == set(self.bookings)
            for i, b in bookings.items():  # the model agrees on every booking
                model = self.bookings[i]
                assert eff[i] == self.effective(model), (i, eff[i], model)
                assert (b.strike_at is not None) == model["strike"], (i, b.strike_at, model)
            # restrictions: the same ones, for the same people, over the same times
            number_of = {bookings[i].person_id: m["person"] for i, m in self.bookings.items()}
            got = sorted((number_of[r.person_id], r.starts_at, r.until) for r in restrictions)
            want = sorted((p, a, z) for p, rs in self.restrictions.items() for a, z in rs)
            assert got == want

    return BookingMachine
