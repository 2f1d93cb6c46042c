"""A hypothesis state machine over the 候补 queue, on SQLite and PostgreSQL: random
interleavings of join / leave / cancel a seat / pay an offer / give an offer up / clock jumps
(pay windows, quiet hours, the cutoff) / 停诊 / its lifting / added seats / promoter runs and
duplicate job deliveries / open holds by outsiders. After every step the waitlist invariants
W1-W8 and the booking invariants I1-I4 hold, and no outsider ever got a seat while someone
was waiting (no leak)."""
from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from sqlalchemy import select, text

import guahao.waitlist.jobs  # noqa: F401  (registers the promoter handlers)
from guahao.booking import actions as booking_actions
from guahao.booking import hospital_actions, suspensions
from guahao.booking import invariants as booking_invariants
from guahao.booking.lifecycle import Actor
from guahao.core.clock import FrozenClock
from guahao.core.db import create_database
from guahao.core.errors import GuahaoError
from guahao.models import Base
from guahao.outbox.models import OutboxMessage
from guahao.outbox.registry import HANDLERS, JobContext
from guahao.scheduling import capacity
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import actions as waitlist_actions
from guahao.waitlist import invariants as waitlist_invariants
from guahao.waitlist.models import WaitlistEntry
from tests.booking_builders import make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital
from tests.waitlist_support import DAY

START = dt.datetime(2026, 11, 19, 2, 0, tzinfo=dt.UTC)
PEOPLE = 6
# entry states the runs reached: the test asserts the machine gets past the easy ones
REACHED: Counter[str] = Counter()


def build_machine(database_url: str, app_settings):
    class WaitlistMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = FrozenClock(START)
            self.db = create_database(database_url, pool_size=2)
            self.ctx = JobContext(db=self.db, clock=self.clock, settings=app_settings)
            self.loop.run_until_complete(self._setup())

        def run(self, coro):
            return self.loop.run_until_complete(coro)

        async def _setup(self) -> None:
            async with self.db.begin() as s:
                for table in reversed(Base.metadata.sorted_tables):
                    await s.execute(text(f'DELETE FROM "{table.name}"'))
            now = self.clock.now()
            hid = await make_hospital(self.db, now)
            dep = await make_department(self.db, hid)
            doc = await make_doctor(self.db, hid, dep)
            self.schedule, self.slots = await make_schedule(self.db, now, hospital_id=hid, department_id=dep,
                                                            doctor_id=doc, day=DAY, capacity=2)
            self.people = []
            for _ in range(PEOPLE + 2):
                account, _ = await make_account(self.db, now)
                self.people.append((account, await make_patient(self.db, now, account)))
            self.sold = []
            for account, patient in self.people[PEOPLE:]:  # two outsiders buy the two seats
                async with self.db.begin() as s:
                    b = await booking_actions.do_hold(s, account_id=account, patient_id=patient,
                                                      slot_id=self.slots[0], now=now)
                    await booking_actions.do_confirm(s, b.id, now=now)
                self.sold.append((account, b.id))
            # every example starts with someone waiting: left to the random steps, a run of 15
            # examples now and then freed a seat or passed the cutoff before anyone joined, and
            # never explored the queue at all (seen twice in full-suite runs)
            account, patient = self.people[0]
            async with self.db.begin() as s:
                await waitlist_actions.do_join(s, account_id=account, patient_id=patient, schedule_id=self.schedule,
                                               now=now)
            self.outsider_bookings: list[int] = []

        async def _tx(self, fn) -> None:
            try:
                async with self.db.begin() as s:
                    await fn(s)
            except GuahaoError:
                pass

        async def _entry(self, i: int) -> WaitlistEntry | None:
            async with self.db.read() as s:
                return await s.scalar(select(WaitlistEntry).where(
                    WaitlistEntry.patient_id == self.people[i][1], WaitlistEntry.state.in_(("waiting", "offered"))))

        @rule(i=st.integers(0, PEOPLE - 1))
        def join(self, i):
            account, patient = self.people[i]
            self.run(self._tx(lambda s: waitlist_actions.do_join(s, account_id=account, patient_id=patient,
                                                                 schedule_id=self.schedule, now=self.clock.now())))

        @rule(i=st.integers(0, PEOPLE - 1))
        def leave(self, i):
            entry = self.run(self._entry(i))
            if entry is not None:
                self.run(self._tx(lambda s: waitlist_actions.do_leave(s, account_id=entry.account_id,
                                                                      entry_id=entry.id, now=self.clock.now())))

        async def _offered(self) -> WaitlistEntry | None:
            async with self.db.read() as s:
                return await s.scalar(select(WaitlistEntry).where(WaitlistEntry.state == "offered")
                                      .order_by(WaitlistEntry.position).limit(1))

        @rule(give_up=st.booleans())
        def answer_offer(self, give_up):
            """The first patient holding an offer pays it, or cancels the offered hold."""
            entry = self.run(self._offered())
            if entry is None:
                return
            if give_up:  # cancels the offered hold itself, on the bookings page
                self.run(self._tx(lambda s: booking_actions.do_cancel(
                    s, account_id=entry.account_id, booking_id=entry.offer_booking_id, now=self.clock.now())))
            else:
                self.run(self._tx(lambda s: booking_actions.do_confirm(s, entry.offer_booking_id,
                                                                       now=self.clock.now())))

        @rule()
        def cancel_a_sold_seat(self):
            if self.sold:
                account, booking = self.sold.pop()
                self.run(self._tx(lambda s: booking_actions.do_cancel(s, account_id=account, booking_id=booking,
                                                                      now=self.clock.now())))

        @rule(minutes=st.sampled_from([1, 20, 31, 6 * 60, 16 * 60]))
        def clock_jumps(self, minutes):
            self.clock.advance(minutes=minutes)

        @rule()
        def suspend(self):
            self.run(self._tx(lambda s: hospital_actions.do_suspend(
                s, schedule_id=self.schedule, hospital_id=None, reason="停诊", actor=Actor("staff", 1),
                now=self.clock.now())))

        @rule()
        def lift_suspension(self):
            """Staff lift the 停诊 (refused when it is not suspended): what it revoked stays revoked."""
            self.run(self._tx(lambda s: suspensions.do_resume(s, schedule_id=self.schedule, hospital_id=None,
                                                              staff_id=None, now=self.clock.now())))

        @rule()
        def add_a_seat(self):
            async def grow(s):
                schedule = await scheduling_service.lock_schedule(s, self.schedule)
                slots = await scheduling_service.list_slots(s, schedule.id)
                total = sum(x.capacity for x in slots if x.pool == "platform")
                await capacity.do_change_capacity(s, schedule, slots, capacities={"platform": total + 1},
                                                  now=self.clock.now())
            self.run(self._tx(grow))

        @rule(twice=st.booleans())
        def jobs_run(self, twice):
            async def drain():
                async with self.db.read() as s:
                    due = list(await s.scalars(select(OutboxMessage).where(
                        OutboxMessage.topic.in_(("seats.freed", "waitlist.promote", "waitlist.sweep",
                                                 "schedule.suspended", "schedule.resumed")),
                        OutboxMessage.state == "pending", OutboxMessage.available_at <= self.clock.now())))
                for m in due:
                    for _ in range(2 if twice else 1):  # a duplicate delivery changes nothing
                        await HANDLERS[m.topic](self.ctx, m.payload)
                    async with self.db.begin() as s:
                        await s.execute(OutboxMessage.__table__.update().where(OutboxMessage.id == m.id)
                                        .values(state="done", done_at=self.clock.now()))
                await HANDLERS["waitlist.sweep"](self.ctx, {})
            self.run(drain())

        @rule()
        def outsider_tries_to_book(self):
            async def attempt():
                async with self.db.read() as s:
                    waiting = await s.scalar(select(WaitlistEntry.id).where(
                        WaitlistEntry.schedule_id == self.schedule, WaitlistEntry.state == "waiting").limit(1))
                account, _ = await make_account(self.db, self.clock.now())
                patient = await make_patient(self.db, self.clock.now(), account)
                try:
                    async with self.db.begin() as s:
                        b = await booking_actions.do_hold(s, account_id=account, patient_id=patient,
                                                          slot_id=self.slots[0], now=self.clock.now())
                except GuahaoError:
                    return
                assert waiting is None, "an outsider took a seat while someone was waiting"
                self.outsider_bookings.append(b.id)
            self.run(attempt())

        @invariant()
        def invariants_hold(self):
            async def audit():
                async with self.db.read() as s:
                    REACHED.update(set(await s.scalars(select(WaitlistEntry.state))))
                    return (await waitlist_invariants.check(s, now=self.clock.now())
                            + await booking_invariants.check(s, now=self.clock.now()))
            assert self.run(audit()) == []

        def teardown(self):
            self.run(self.db.dispose())
            self.loop.close()

    return WaitlistMachine


@pytest.mark.slow
def test_waitlist_state_machine(database_url, settings):
    REACHED.clear()
    machine = build_machine(database_url, settings)
    machine.TestCase.settings = settings_for_run()
    machine.TestCase().runTest()
    assert "waiting" in REACHED, REACHED  # the tour below is what guarantees the rest is reached


def test_waitlist_machine_tour_reaches_every_entry_state(database_url, settings):
    """A fixed walk through the same machine, so every run reaches every entry state and the
    time rules (pay window, 停诊 and its lifting, added seats, the cutoff), whatever
    hypothesis draws above."""
    REACHED.clear()
    m = build_machine(database_url, settings)()
    try:
        def step(action, **kw):
            action(**kw)
            m.invariants_hold()

        for i in range(5):
            step(m.join, i=i)
        step(m.outsider_tries_to_book)
        step(m.cancel_a_sold_seat)
        step(m.jobs_run, twice=True)  # offer to the first
        step(m.answer_offer, give_up=False)  # paid
        step(m.jobs_run, twice=False)  # fulfilled
        step(m.cancel_a_sold_seat)
        step(m.jobs_run, twice=False)  # offer to the second
        step(m.clock_jumps, minutes=31)
        step(m.jobs_run, twice=True)  # lapsed; offer to the third
        step(m.leave, i=4)
        step(m.suspend)  # the third's offer is revoked: back to waiting at its place
        step(m.jobs_run, twice=False)
        step(m.lift_suspension)
        step(m.add_a_seat)
        step(m.jobs_run, twice=False)
        step(m.answer_offer, give_up=True)  # the offered hold cancelled on the bookings page
        step(m.jobs_run, twice=False)
        step(m.outsider_tries_to_book)  # nobody waits: a free seat is open to anyone
        step(m.outsider_tries_to_book)
        step(m.join, i=5)
        for _ in range(3):
            step(m.clock_jumps, minutes=16 * 60)  # past the cutoff
        step(m.jobs_run, twice=False)
        step(m.outsider_tries_to_book)
    finally:
        m.teardown()
    assert {"waiting", "offered", "fulfilled", "lapsed", "left", "closed"} <= set(REACHED), REACHED


def settings_for_run():
    return settings(max_examples=15, stateful_step_count=40, deadline=None, suppress_health_check=list(HealthCheck))
