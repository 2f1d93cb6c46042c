"""Weekly templates, dated schedules (排班) and their slots (号源) per pool."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

PERIODS = ("morning", "afternoon", "evening", "all_day")
POOLS = ("platform", "onsite")
SCHEDULE_STATUSES = ("draft", "published", "suspended")
# How the schedule's seats are released (issue 13): `fifo` (first come), `draw` (摇号: holds are
# refused; guahao.draw takes entries and allocates the seats), `drawn` (the draw has allocated;
# what is left is booked first come). Written only by guahao.draw through `set_release_mode`.
RELEASE_MODES = ("fifo", "draw", "drawn")


class ScheduleTemplate(IdMixin, Base):
    """A weekly recurring clinic: doctor (or department general clinic) x weekday x period."""

    __tablename__ = "schedule_templates"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id", ondelete="CASCADE"))
    doctor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("doctors.id", ondelete="CASCADE"))
    weekday: Mapped[int] = mapped_column(SmallInteger)  # 0 = Monday
    period: Mapped[str] = mapped_column(String(20))
    registration_level: Mapped[str] = mapped_column(String(20))
    platform_capacity: Mapped[int] = mapped_column(Integer)
    onsite_capacity: Mapped[int] = mapped_column(Integer, default=0)
    # time bands as [["08:00", "08:30"], ...], used when the hospital books by time band;
    # empty = 30-minute bands across the period
    bands: Mapped[list] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(default=True)

    __table_args__ = (
        CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
        CheckConstraint(f"period IN {PERIODS!r}", name="period"),
        CheckConstraint("platform_capacity >= 0 AND onsite_capacity >= 0", name="capacity"),
    )


class Schedule(IdMixin, Base):
    """One clinic session: a doctor (or department general clinic) on a date and period."""

    __tablename__ = "schedules"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id", ondelete="CASCADE"))
    doctor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("doctors.id", ondelete="CASCADE"))
    template_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("schedule_templates.id", ondelete="SET NULL"))
    date: Mapped[dt.date] = mapped_column(Date)
    period: Mapped[str] = mapped_column(String(20))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    registration_level: Mapped[str] = mapped_column(String(20))
    registration_fee: Mapped[int] = mapped_column(Integer)  # fen
    consultation_fee: Mapped[int] = mapped_column(Integer)  # fen
    status: Mapped[str] = mapped_column(String(20), default="draft")
    suspended_reason: Mapped[str | None] = mapped_column(String(400))
    # the instant its slots open for booking, fixed when published from the hospital's rules
    release_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    his_session_id: Mapped[str | None] = mapped_column(String(64))  # the HIS session it mirrors
    # 候补: someone is waiting for a seat of this schedule. Written only by the waitlist (under
    # this row's exclusive lock, recomputed from its entries); while true an open hold's seat
    # claim finds nothing (seats.claim), so a freed seat never returns to open booking.
    waitlist_waiting: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    release_mode: Mapped[str] = mapped_column(String(10), default="fifo", server_default="fifo")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"period IN {PERIODS!r}", name="period"),
        CheckConstraint(f"status IN {SCHEDULE_STATUSES!r}", name="status"),
        CheckConstraint(f"release_mode IN {RELEASE_MODES!r}", name="release_mode"),
        CheckConstraint("registration_fee >= 0 AND consultation_fee >= 0", name="fees"),
        CheckConstraint("ends_at > starts_at", name="period_order"),
        Index("uq_schedules_doctor_date_period", "doctor_id", "date", "period", unique=True,
              sqlite_where=text("doctor_id IS NOT NULL"), postgresql_where=text("doctor_id IS NOT NULL")),
        Index("uq_schedules_clinic_date_period", "department_id", "date", "period", unique=True,
              sqlite_where=text("doctor_id IS NULL"), postgresql_where=text("doctor_id IS NULL")),
        Index("ix_schedules_hospital_date", "hospital_id", "date"),
        Index("ix_schedules_department_date", "department_id", "date"),
        UniqueConstraint("hospital_id", "his_session_id"),
    )


class Slot(IdMixin, Base):
    """A bookable band inside a schedule for one pool, with its capacity.

    Visit numbers of a band are the contiguous range [first_visit_no, first_visit_no + capacity).
    """

    __tablename__ = "slots"

    schedule_id: Mapped[int] = mapped_column(BigId, ForeignKey("schedules.id", ondelete="CASCADE"), index=True)
    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    pool: Mapped[str] = mapped_column(String(20))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    capacity: Mapped[int] = mapped_column(Integer)
    first_visit_no: Mapped[int] = mapped_column(Integer)
    his_band_id: Mapped[str | None] = mapped_column(String(64))  # the HIS time band it mirrors

    __table_args__ = (
        CheckConstraint(f"pool IN {POOLS!r}", name="pool"),
        UniqueConstraint("hospital_id", "pool", "his_band_id"),
        CheckConstraint("capacity >= 0", name="capacity"),
        CheckConstraint("first_visit_no >= 1", name="first_visit_no"),
        Index("uq_slots_schedule_pool_start", "schedule_id", "pool", "starts_at", unique=True),
    )


class SlotPosition(IdMixin, Base):
    __tablename__ = "slot_positions"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    schedule_id: Mapped[int] = mapped_column(BigId, ForeignKey("schedules.id", ondelete="CASCADE"))
    slot_id: Mapped[int] = mapped_column(BigId, ForeignKey("slots.id", ondelete="CASCADE"))
    visit_no: Mapped[int] = mapped_column(Integer)
    # the booking occupying this seat; with hold_expires_at set it is a hold that lapses by time
    booking_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("bookings.id", ondelete="SET NULL"))
    hold_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("schedule_id", "visit_no"),
        # the claim scans a slot's seats in visit-number order
        Index("ix_slot_positions_slot_visit_no", "slot_id", "visit_no"),
        Index("ix_slot_positions_booking_id", "booking_id"),
    )
