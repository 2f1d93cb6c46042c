"""Booking reports for the back office: counts per day / department / doctor / state, the
no-show rate and cancellations (by patients and by the hospital) over a range of visit dates.

Read-only aggregate queries (GROUP BY in the database); no personal data in any row.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.booking.models import STATES, Booking, BookingEvent
from guahao.catalog import service as catalog_service
from guahao.core.errors import InvalidRequest

GROUPS = ("day", "department", "doctor", "state")
MAX_DAYS = 366
DEFAULT_DAYS = 7
VISITED = ("checked_in", "completed")


@dataclass
class ReportRow:
    key: str
    label: str
    states: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.states.values())


@dataclass(frozen=True)
class Summary:
    bookings: int
    states: dict[str, int]
    no_show_rate: float | None  # no-shows among visits that were due (visited + no-show); None without any
    cancelled_by_patient: int
    cancelled_by_hospital: int
    revoked: int


def report_range(first: dt.date | None, last: dt.date | None, today: dt.date) -> tuple[dt.date, dt.date]:
    """The visit dates a report covers: up to today, a week unless given; at most a year
    (the API and the staff pages ask the same)."""
    last = last or today
    first = first or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if last < first or (last - first).days >= MAX_DAYS:
        raise InvalidRequest(field="from|to")
    return first, last


def _in_range(hospital_id: int, first: dt.date, last: dt.date):
    return (Booking.hospital_id == hospital_id, Booking.visit_date >= first, Booking.visit_date <= last)


async def bookings_by(session: AsyncSession, *, hospital_id: int, first: dt.date, last: dt.date,
                      group: str) -> list[ReportRow]:
    """One row per day (visit date) / department / doctor / state, with counts per state."""
    column = {"day": Booking.visit_date, "department": Booking.department_id, "doctor": Booking.doctor_id,
              "state": Booking.state}[group]
    rows = await session.execute(select(column, Booking.state, func.count())
                                 .where(*_in_range(hospital_id, first, last)).group_by(column, Booking.state))
    by_key: dict = defaultdict(dict)
    for key, state, count in rows:
        by_key[key][state] = count
    labels = await _labels(session, hospital_id, group, list(by_key))
    ordered = sorted(by_key, key=lambda k: (k is None, str(k) if group != "day" else k.isoformat()))
    return [ReportRow(key="" if k is None else (k.isoformat() if group == "day" else str(k)),
                      label=labels.get(k, ""), states=dict(sorted(by_key[k].items()))) for k in ordered]


async def _labels(session: AsyncSession, hospital_id: int, group: str, keys: list) -> dict:
    if group == "doctor":
        doctors = await catalog_service.doctors_by_id(session, (k for k in keys if k is not None))
        return {k: d.name for k, d in doctors.items()} | {None: "普通门诊"}
    if group == "department":
        return {d.id: d.name for d in await catalog_service.list_departments(session, hospital_id)}
    return {}


async def summary(session: AsyncSession, *, hospital_id: int, first: dt.date, last: dt.date) -> Summary:
    states = dict((await session.execute(
        select(Booking.state, func.count()).where(*_in_range(hospital_id, first, last)).group_by(Booking.state))).all())
    states = {s: states.get(s, 0) for s in STATES}
    due = states["no_show"] + sum(states[s] for s in VISITED)
    cancels = dict((await session.execute(
        select(BookingEvent.actor_type, func.count()).join(Booking, Booking.id == BookingEvent.booking_id)
        .where(*_in_range(hospital_id, first, last), BookingEvent.to_state == "cancelled")
        .group_by(BookingEvent.actor_type))).all())
    return Summary(bookings=sum(states.values()), states=states,
                   no_show_rate=round(states["no_show"] / due, 4) if due else None,
                   cancelled_by_patient=cancels.get("account", 0),
                   cancelled_by_hospital=cancels.get("staff", 0), revoked=states["revoked"])
