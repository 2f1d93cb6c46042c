"""The draw's tables (摇号放号, issue 13 part 2): one draw per schedule, one entry per person.

Only guahao.draw reads and writes them (an import-linter contract says so). Seats are never
written here: a winner's seat is a hold taken through booking's `do_hold`.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

# open: entries taken (from opens_at to closes_at); ranked: the secret is revealed and every
# entry has its rank; allocated: every entry has its outcome; cancelled: switched back to
# fifo before it opened (no entry can exist then).
DRAW_STATUSES = ("open", "ranked", "allocated", "cancelled")
OUTCOMES = ("won", "lost", "skipped")
MODES = ("fifo", "draw")


class Draw(IdMixin, Base):
    __tablename__ = "draws"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    schedule_id: Mapped[int] = mapped_column(BigId, ForeignKey("schedules.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="open")
    opens_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # release instant minus the pre-queue
    release_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # the window starts at the release instant
    closes_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # entries that arrived before it count
    result_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # closes_at + grace: the draw runs
    # commit-reveal: SHA-256 of the secret is public from creation; the secret only once ranked
    commitment: Mapped[str] = mapped_column(String(64))
    secret: Mapped[str] = mapped_column(String(64))
    root: Mapped[str | None] = mapped_column(String(64))  # SHA-256 over the sorted receipts
    seed: Mapped[str | None] = mapped_column(String(64))  # HMAC-SHA256(secret, root:draw id)
    seats: Mapped[int | None] = mapped_column(Integer)  # platform seats free when ranked
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ranked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    allocated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"status IN {DRAW_STATUSES!r}", name="status"),
        CheckConstraint("opens_at <= release_at AND release_at < closes_at AND closes_at <= result_at",
                        name="timeline"),
        Index("ix_draws_status_result_at", "status", "result_at"),
    )


class DrawEntry(IdMixin, Base):
    __tablename__ = "draw_entries"

    draw_id: Mapped[int] = mapped_column(BigId, ForeignKey("draws.id", ondelete="CASCADE"))
    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    # one entry per real person (I3's person, keyed by the ID number) however many accounts
    # or devices enter: the unique key below is the database's answer to a twin
    person_id: Mapped[int] = mapped_column(BigId, ForeignKey("persons.id", ondelete="CASCADE"))
    account_id: Mapped[int] = mapped_column(BigId, ForeignKey("accounts.id", ondelete="CASCADE"))
    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id", ondelete="CASCADE"))
    receipt: Mapped[str] = mapped_column(String(32))  # random, public in the audit record; no PII
    waitlist_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    arrived_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # stamped when the request arrived
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    rank: Mapped[int | None] = mapped_column(Integer)  # 1 = first; set when the draw is ranked
    outcome: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(40))  # a skipped winner's refusal code
    booking_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("bookings.id", ondelete="SET NULL"))
    visit_no: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("draw_id", "person_id"),
        UniqueConstraint("draw_id", "receipt"),
        CheckConstraint(f"outcome IS NULL OR outcome IN {OUTCOMES!r}", name="outcome"),
        Index("ix_draw_entries_draw_rank", "draw_id", "rank"),
        Index("ix_draw_entries_account_id", "account_id"),
    )


class ReleaseModeSetting(IdMixin, Base):
    """A department's or a schedule's release mode, overriding the hospital rule
    (`hospital_rules.release_mode`); the schedule's wins over its department's."""

    __tablename__ = "release_mode_settings"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    department_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("departments.id", ondelete="CASCADE"))
    schedule_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("schedules.id", ondelete="CASCADE"))
    mode: Mapped[str] = mapped_column(String(10))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"mode IN {MODES!r}", name="mode"),
        CheckConstraint("(department_id IS NULL) <> (schedule_id IS NULL)", name="one_subject"),
        Index("uq_release_mode_settings_department", "department_id", unique=True,
              sqlite_where=text("department_id IS NOT NULL"), postgresql_where=text("department_id IS NOT NULL")),
        Index("uq_release_mode_settings_schedule", "schedule_id", unique=True,
              sqlite_where=text("schedule_id IS NOT NULL"), postgresql_where=text("schedule_id IS NOT NULL")),
        Index("ix_release_mode_settings_hospital", "hospital_id"),
    )
