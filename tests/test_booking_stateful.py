"""The booking state machine (tests/booking_machine.py) on SQLite and on PostgreSQL.

Two tests share one machine and one reference model: hypothesis explores random step
sequences, and a fixed tour walks every time rule once so that what the machine claims to
reach (booking close, cancellation deadline, lapsed holds, check-in, no-shows, strikes and
restrictions, 停诊) is reached on every run, whatever hypothesis draws. Both check the
database against the model and I1-I4 after every step.
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

from tests.booking_machine import REACHED, build_machine

# what the tour must reach; the keys are counted by the machine as it checks each answer
TOUR_REACHES = {
    "hold:ok", "hold:slot_sold_out", "hold:duplicate_booking", "hold:too_many_bookings", "hold:restricted_until",
    "hold:booking_closed", "hold:schedule_suspended", "confirm:held", "confirm:expired",
    "cancel:confirmed:cancelled", "cancel:confirmed:cancel_deadline_passed", "cancel:held:cancelled",
    "cancel:expired:expired", "check_in:True", "check_in:False", "complete", "no_show", "restriction", "revoked",
}


@pytest.mark.slow
def test_booking_state_machine(database_url):
    machine = build_machine(database_url)
    machine.TestCase.settings = settings(max_examples=25, stateful_step_count=80, deadline=None,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()


def test_booking_machine_tour_reaches_every_time_rule(database_url):
    REACHED.clear()
    m = build_machine(database_url)()
    try:
        def step(action, *args):
            result = action(*args)
            m.invariants_hold()
            return result

        Q, R, P, P2 = 2, 3, 0, 1  # holders; P and P2 are one person on two accounts
        step(m.hold_one, Q, 0, False)  # tomorrow, two seats
        step(m.hold_one, R, 0, False)
        step(m.hold_one, P, 0, False)  # sold out
        step(m.jump_to_hold_deadline, 0, True)  # payment exactly at the deadline: refused (I4)
        p_tomorrow = step(m.hold_one, P, 0, True)  # takes a lapsed seat and pays at once
        step(m.hold_one, P2, 0, False)  # the same person, department and day via another account
        p_free = step(m.hold_one, P2, 1, False)  # free registration: confirmed at once
        step(m.hold_one, P, 3, False)  # a third live booking is over the limit of two
        step(m.cancel_one, p_free)  # strike 1
        p_later = step(m.hold_one, P, 3, True)
        step(m.cancel_one, p_later)  # strike 2: restricted
        step(m.hold_one, P, 2, False)  # restricted_until
        q_free = step(m.hold_one, Q, 1, False)
        r_held = step(m.hold_one, R, 3, False)
        step(m.cancel_one, r_held)  # a hold may be cancelled, no strike
        q_held = step(m.hold_one, Q, 3, False)
        step(m.advance, 20)
        step(m.advance, 20)  # q_held's hold has lapsed
        step(m.cancel_one, q_held)
        step(m.jump_to_next_rule_time, -1)  # a second before tomorrow's cancellation deadline
        step(m.jump_to_next_rule_time, 0)  # on it
        step(m.cancel_one, p_tomorrow)  # too late
        step(m.check_in_one, q_free)  # the visit day has begun (00:00 local)
        assert m.to_next_morning(0)
        m.invariants_hold()
        step(m.hold_one, R, 0, False)  # booking closed at 08:00
        step(m.check_in_one, p_later)  # cancelled: refused
        step(m.complete_one, q_free)
        step(m.period_over, 0)  # p_tomorrow did not come: no-show, a strike while restricted
        step(m.hold_one, Q, 2, False)
        step(m.suspend_one, 2)  # 停诊 revokes Q's booking
        step(m.hold_one, R, 2, False)  # schedule_suspended
        step(m.sweep)
        step(m.mark_no_shows)
    finally:
        m.teardown()
    missing = TOUR_REACHES - set(REACHED)
    assert not missing, f"the machine no longer reaches {sorted(missing)}; retune the tour"
