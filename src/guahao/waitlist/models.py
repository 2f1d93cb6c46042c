"""候补 (waitlist) tables: the entries of each schedule's queue, and each hospital's waitlist rules.

One live entry (waiting or offered) per real person and schedule is a partial unique index,
so two accounts listing the same person cannot both join, whatever the timing. The position
is unique per schedule and never reused: the queue order is the position order, and a 停诊
that revokes an offer puts its entry back at its old position.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Time, text, true
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

ENTRY_STATES = ("waiting", "offered", "fulfilled", "lapsed", "left", "skipped", "closed")
LIVE_STATES = ("waiting", "offered")
_LIVE_SQL = f"state IN {LIVE_STATES!r}"
ONE_LIVE_INDEX = "uq_waitlist_entries_schedule_person_live"


class WaitlistEntry(IdMixin, Base):
    __tablename__ = "waitlist_entries"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    schedule_id: Mapped[int] = mapped_column(BigId, ForeignKey("schedules.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(BigId, ForeignKey("persons.id"))
    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"))
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    # the queue order: FIFO by join, or a draw's rank (do_join_ranked); unique per schedule
    position: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(20))
    # the hold offered to this entry (one live offer at a time; NULL again after a 停诊 revoked it)
    offer_booking_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("bookings.id"), unique=True)
    offers: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(60))  # why it was skipped or closed
    # the waitlist cutoff under the rules the entry joined with (kept, like a booking's deadlines)
    cutoff_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    offered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"state IN {ENTRY_STATES!r}", name="state"),
        CheckConstraint("state <> 'offered' OR offer_booking_id IS NOT NULL", name="offer_has_booking"),
        Index(ONE_LIVE_INDEX, "schedule_id", "person_id", unique=True,
              sqlite_where=text(_LIVE_SQL), postgresql_where=text(_LIVE_SQL)),
        Index("uq_waitlist_entries_schedule_position", "schedule_id", "position", unique=True),
        Index("ix_waitlist_entries_schedule_state_position", "schedule_id", "state", "position"),
        Index("ix_waitlist_entries_person_state", "person_id", "hospital_id", "state"),
        Index("ix_waitlist_entries_account", "account_id", "joined_at"),
        Index("ix_waitlist_entries_state_cutoff", "state", "cutoff_at"),
    )


class WaitlistRules(Base):
    """A hospital's 候补 rules; no row: the defaults (the column defaults are the one source)."""

    __tablename__ = "waitlist_rules"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    max_entries_per_person: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    offer_minutes: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    # the queue closes this many minutes before midnight starting the visit day [60: 23:00 the day before]
    cutoff_minutes_before_visit_day: Mapped[int] = mapped_column(Integer, default=60, server_default="60")
    lapse_counts_as_strike: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # an offer made in these quiet hours (hospital time) runs from their end, so it cannot lapse overnight
    quiet_from: Mapped[dt.time] = mapped_column(Time, default=dt.time(22, 0), server_default="22:00:00")
    quiet_until: Mapped[dt.time] = mapped_column(Time, default=dt.time(7, 0), server_default="07:00:00")
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("max_entries_per_person BETWEEN 1 AND 10", name="max_entries"),
        CheckConstraint("offer_minutes BETWEEN 5 AND 1440", name="offer_minutes"),
        CheckConstraint("cutoff_minutes_before_visit_day BETWEEN -720 AND 2880", name="cutoff"),
    )
