"""Bookings (挂号单), their visit-number positions, events, idempotency keys and restrictions.

Capacity is rows, not a counter: every platform/onsite seat of a slot is one `SlotPosition`
(owned by scheduling, claimed through `guahao.scheduling.seats`)
with its visit number. A hold writes the booking id and the hold deadline onto a free
position; a position whose hold deadline has passed counts as free to every query, so
capacity returns the instant a hold expires, with no job running (I4). Uniqueness of visit
numbers (I2) is the unique key (schedule_id, visit_no); capacity (I1) is the number of rows.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.crypto import Encrypted, encrypted_rows
from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

STATES = ("held", "confirmed", "checked_in", "completed", "cancelled", "expired", "revoked", "no_show")
# The one definition of the state groups (every query and check uses these names):
# ACTIVE: still ahead of the visit. These count toward a person's limits (one per department
# and day, max bookings), are what 停诊 revokes, and keep a patient from being deleted (with
# checked_in, see IN_PROGRESS_STATES).
ACTIVE_STATES = ("held", "confirmed")
IN_PROGRESS_STATES = ACTIVE_STATES + ("checked_in",)
# LIVE: occupy their seat and visit number (I1, I2) and the I3 index. A held booking whose
# deadline passed is still 'held' in the row until settled; seat queries treat it as free.
LIVE_STATES = ACTIVE_STATES + ("checked_in", "completed")
I3_INDEX = "uq_bookings_person_department_day_live"
_LIVE_SQL = f"state IN {LIVE_STATES!r}"
HIS_STATES = ("pending", "locked", "confirmed", "cancelled", "refused")


class Booking(IdMixin, Base):
    __tablename__ = "bookings"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id"))
    doctor_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("doctors.id"))
    schedule_id: Mapped[int] = mapped_column(BigId, ForeignKey("schedules.id"))
    slot_id: Mapped[int] = mapped_column(BigId, ForeignKey("slots.id"))
    # NULL for a walk-in registered at the window into the on-site pool (booking.window_actions)
    account_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("accounts.id"))
    patient_id: Mapped[int] = mapped_column(BigId, ForeignKey("patients.id"))
    person_id: Mapped[int] = mapped_column(BigId, ForeignKey("persons.id"))
    visit_date: Mapped[dt.date] = mapped_column(Date)
    # the visit date when the hospital's one-per-department-per-day rule applied at hold time,
    # NULL otherwise: the I3 unique index is over this column, so switching the rule off works
    dedupe_day: Mapped[dt.date | None] = mapped_column(Date)
    visit_no: Mapped[int | None] = mapped_column(Integer)
    booking_code: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(20))
    registration_fee: Mapped[int] = mapped_column(Integer)
    consultation_fee: Mapped[int] = mapped_column(Integer)
    amount_due: Mapped[int] = mapped_column(Integer)
    hold_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # the online cancellation deadline under the rules the booking was made with (DESIGN.md
    # section 4: a booking keeps its deadlines); NULL only for rows older than this column
    cancel_deadline: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # and whether its cancellation counts toward the restriction (Rules.strike_cancellations)
    strike_cancellations: Mapped[str | None] = mapped_column(String(20))
    # set when a cancellation (per the hospital's strike_cancellations) or a no-show counts
    # toward the blacklist
    strike_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    state_reason: Mapped[str | None] = mapped_column(String(400))
    # where the booking stands at the hospital's HIS (NULL for hospitals without one):
    # pending (attempt recorded, answer not known yet), locked, confirmed, cancelled, refused
    his_state: Mapped[str | None] = mapped_column(String(20))
    his_visit_no: Mapped[int | None] = mapped_column(Integer)  # the HIS's 就诊序号 once confirmed there
    his_patient_id: Mapped[str | None] = mapped_column(String(64))  # the hospital patient id (建档) used
    # something the hospital must resolve by hand (e.g. capacity_cut); NULL when nothing is open
    his_flag: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"state IN {STATES!r}", name="state"),
        CheckConstraint("amount_due = registration_fee + consultation_fee", name="amount"),
        CheckConstraint(f"his_state IS NULL OR his_state IN {HIS_STATES!r}", name="his_state"),
        UniqueConstraint("hospital_id", "booking_code"),
        # I2 backstop: a visit number belongs to one live booking of a schedule
        Index("uq_bookings_schedule_visit_no_live", "schedule_id", "visit_no", unique=True,
              sqlite_where=text(_LIVE_SQL), postgresql_where=text(_LIVE_SQL)),
        # I3: one live booking per real person, hospital, department and day, where the rule is
        # on (dedupe_day NULL never conflicts)
        Index(I3_INDEX, "person_id", "hospital_id", "department_id", "dedupe_day",
              unique=True, sqlite_where=text(_LIVE_SQL), postgresql_where=text(_LIVE_SQL)),
        Index("ix_bookings_account_id", "account_id", "created_at"),
        Index("ix_bookings_schedule_state", "schedule_id", "state"),
        Index("ix_bookings_person_hospital", "person_id", "hospital_id", "state"),
        Index("ix_bookings_state_hold_expires", "state", "hold_expires_at"),
        Index("ix_bookings_hospital_visit_date_state", "hospital_id", "visit_date", "state"),
    )


class BookingEvent(IdMixin, Base):
    """One row per state transition: who, when, why."""

    __tablename__ = "booking_events"

    booking_id: Mapped[int] = mapped_column(BigId, ForeignKey("bookings.id", ondelete="CASCADE"), index=True)
    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    actor_type: Mapped[str] = mapped_column(String(20))  # account | staff | system
    actor_id: Mapped[int | None] = mapped_column(BigId)
    reason: Mapped[str | None] = mapped_column(String(400))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Restriction(IdMixin, Base):
    """黑名单: a person barred from online booking at a hospital until a time."""

    __tablename__ = "restrictions"

    person_id: Mapped[int] = mapped_column(BigId, ForeignKey("persons.id"), index=True)
    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(400))
    strikes: Mapped[int] = mapped_column(Integer)
    lifted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    lifted_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff_users.id"))
    lift_reason: Mapped[str | None] = mapped_column(String(400))


@encrypted_rows
class BookingReason(IdMixin, Base):
    """病情描述: the patient's reason for the visit, in their words. Health data (PIPL
    sensitive personal information): encrypted like an ID number, written only with the
    account's health-data consent, read by the patient and by that booking's hospital alone
    (the staff read is audited). A table of its own, not a column of `bookings`: the hot row
    of every hold stays narrow, and a hold without a description writes nothing here."""

    __tablename__ = "booking_reasons"

    booking_id: Mapped[int] = mapped_column(BigId, ForeignKey("bookings.id", ondelete="CASCADE"), unique=True)
    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Encrypted("booking_reasons.text", length=2048))
    consent_version: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # random, set when the object is built: binds the encrypted column to this row (core/crypto)
    row_key: Mapped[str] = mapped_column(String(32), unique=True)
