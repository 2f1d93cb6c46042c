"""A hypothesis state machine drives holds, confirmations, cancellations, clock moves,
suspensions, sweeps and no-show marking against a small reference model, and checks the
invariants I1-I4 in the database after every step (on SQLite and on PostgreSQL)."""
from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import func, select, text

from guahao.booking import actions, hospital_actions, inventory
from guahao.booking.models import Booking, BookingEvent, SlotPosition
from guahao.core.clock import FrozenClock
from guahao.core.db import create_database
from guahao.core.errors import GuahaoError
from guahao.models import Base
from guahao.scheduling.models import Slot
from tests.booking_builders import make_id_number, make_patient, make_schedule
from tests.builders import make_account, make_department, make_doctor, make_hospital

START = dt.datetime(2026, 11, 19, 2, 0, tzinfo=dt.timezone.utc)
LIVE = ("held", "confirmed", "checked_in", "completed")


def build_machine(database_url: str):
    class BookingMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.clock = FrozenClock(START)
            self.db = create_database(database_url, pool_size=2)
            self.run(self._setup())
            self.model: dict[int, dict] = {}  # booking id -> {"state", "deadline", "slot", "person"}
            self.suspended: set[int] = set()  # slot ids of suspended schedules

        def run(self, coro):
            return self.loop.run_until_complete(coro)

        async def _setup(self) -> None:
            async with self.db.begin() as s:
                for table in reversed(Base.metadata.sorted_tables):
                    await s.execute(text(f'DELETE FROM "{table.name}"'))
            now = self.clock.now()
            # the model has no restrictions: only paid cancellations strike here (held ones
            # count by default since strike_cancellations; the rewrite of this test models them)
            hid = await make_hospital(self.db, now, strike_cancellations="paid_only")
            dep = await make_department(self.db, hid)
            self.slots, self.schedules, self.capacity = [], [], {}
            for i, cap in enumerate((2, 1)):
                doc = await make_doctor(self.db, hid, dep, name=f"医生{i}")
                sch, slots = await make_schedule(self.db, now, hospital_id=hid, department_id=dep, doctor_id=doc,
                                                 day=dt.date(2026, 11, 21 + i), capacity=cap)
                self.schedules.append(sch)
                self.slots += slots
                self.capacity[slots[0]] = cap
            shared = make_id_number()
            self.holders = []  # (account_id, patient_id, person id number)
            for i in range(4):
                account_id, _ = await make_account(self.db, now)
                number = shared if i < 2 else make_id_number()
                self.holders.append((account_id, await make_patient(self.db, now, account_id, id_number=number), number))

        def teardown(self) -> None:
            self.run(self.db.dispose())
            self.loop.close()

        # --- reference model helpers ---
        def live(self, b: dict) -> bool:
            if b["state"] == "held":
                return b["deadline"] > self.clock.now()
            return b["state"] in LIVE

        async def _do(self, fn):
            try:
                async with self.db.begin() as s:
                    return await fn(s)
            except GuahaoError as exc:
                return exc

        # --- rules ---
        @rule(holder=st.integers(0, 3), slot=st.integers(0, 1))
        def hold(self, holder, slot):
            account_id, patient_id, person = self.holders[holder]
            slot_id = self.slots[slot]
            result = self.run(self._do(lambda s: actions.do_hold(s, account_id=account_id, patient_id=patient_id,
                                                                 slot_id=slot_id, now=self.clock.now())))
            taken = sum(1 for b in self.model.values() if b["slot"] == slot_id and self.live(b))
            same_day = any(b["person"] == person and b["slot"] == slot_id and self.live(b) for b in self.model.values())
            suspended = slot_id in self.suspended
            if isinstance(result, GuahaoError):
                expected = {"schedule_suspended", "booking_closed", "duplicate_booking", "slot_sold_out"}
                assert result.code in expected, result.code
                if result.code == "slot_sold_out":
                    assert taken >= self.capacity[slot_id]
                if result.code == "duplicate_booking":
                    assert same_day
                return
            assert not suspended and not same_day and taken < self.capacity[slot_id]
            self.model[result.id] = {"state": result.state, "deadline": result.hold_expires_at, "slot": slot_id,
                                     "person": person, "account": account_id}

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def confirm(self, data):
            bid = data.draw(st.sampled_from(sorted(self.model)))
            b = self.model[bid]
            result = self.run(self._do(lambda s: actions.do_confirm(s, bid, now=self.clock.now())))
            if b["state"] == "held" and b["deadline"] > self.clock.now():
                assert not isinstance(result, GuahaoError), result
                b["state"] = "confirmed"
            else:
                assert isinstance(result, GuahaoError)

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def cancel(self, data):
            bid = data.draw(st.sampled_from(sorted(self.model)))
            b = self.model[bid]
            result = self.run(self._do(lambda s: actions.do_cancel(s, account_id=b["account"], booking_id=bid,
                                                                   now=self.clock.now())))
            if not isinstance(result, GuahaoError):
                b["state"] = result.state
            if b["state"] == "held" and b["deadline"] <= self.clock.now():
                b["state"] = "expired"

        @rule(minutes=st.integers(5, 20))
        def advance(self, minutes):
            self.clock.advance(minutes=minutes)

        @rule(which=st.integers(0, 1), dice=st.integers(0, 7))
        def suspend(self, which, dice):
            if dice:  # 停诊 ends a schedule's story, so let it happen rarely
                return
            sch = self.schedules[which]
            self.run(self._do(lambda s: hospital_actions.do_suspend(s, schedule_id=sch, hospital_id=None,
                                                                    reason="停诊", actor=actions.Actor.system(),
                                                                    now=self.clock.now())))
            self.suspended.add(self.slots[which])
            for b in self.model.values():
                if b["slot"] == self.slots[which] and self.live(b):
                    b["state"] = "revoked"

        @rule()
        def sweep(self):
            self.run(self._do(lambda s: actions.do_expire_due(s, now=self.clock.now())))

        @rule()
        def mark_no_shows(self):
            self.run(self._do(lambda s: hospital_actions.do_mark_no_shows(s, now=self.clock.now())))

        # --- invariants, read from the database ---
        @invariant()
        def invariants_hold(self):
            self.run(self._check())

        async def _check(self) -> None:
            now = self.clock.now()
            async with self.db.read() as s:
                bookings = list(await s.scalars(select(Booking)))
                live = [b for b in bookings if b.state in LIVE and not (b.state == "held" and b.hold_expires_at <= now)]
                for slot_id, cap in self.capacity.items():  # I1
                    assert sum(1 for b in live if b.slot_id == slot_id) <= cap
                    taken = (await inventory.taken_counts(s, [slot_id], now)).get(slot_id, 0)
                    assert taken == sum(1 for b in live if b.slot_id == slot_id)
                    assert await s.scalar(select(Slot.capacity).where(Slot.id == slot_id)) == await s.scalar(
                        select(func.count()).select_from(SlotPosition).where(SlotPosition.slot_id == slot_id))
                seen = [(b.schedule_id, b.visit_no) for b in live]  # I2
                assert len(seen) == len(set(seen))
                people = [(b.person_id, b.department_id, b.visit_date) for b in live]  # I3
                assert len(people) == len(set(people))
                for e in await s.scalars(select(BookingEvent).where(BookingEvent.to_state == "confirmed",
                                                                    BookingEvent.from_state == "held")):  # I4
                    booking = next(b for b in bookings if b.id == e.booking_id)
                    assert e.at < booking.hold_expires_at
                for b in bookings:  # the model agrees on every booking's effective state
                    expected = self.model[b.id]
                    effective = "expired" if b.state == "held" and b.hold_expires_at <= now else b.state
                    modelled = "expired" if expected["state"] == "held" and not self.live(expected) else expected["state"]
                    if modelled == "confirmed" and effective == "no_show":
                        expected["state"] = modelled = "no_show"
                    assert effective == modelled, (b.id, effective, modelled)

    return BookingMachine


@pytest.mark.slow
def test_booking_state_machine(database_url):
    machine = build_machine(database_url)
    machine.TestCase.settings = settings(max_examples=50, stateful_step_count=40, deadline=None,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()
