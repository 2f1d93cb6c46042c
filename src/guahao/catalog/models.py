"""Hospitals, their rules, departments (two-level tree), doctors and fee rules."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    Time,
    UniqueConstraint,
    event,
    false,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

HIS_MODES = ("local", "synced", "realtime")
# how patients enter a hospital's booking: by the department tree, or by 普通号 / 专家号 first
ENTRANCES = ("department", "registration_level")
LEVELS = ("三级甲等", "三级乙等", "三级", "二级甲等", "二级乙等", "二级", "一级", "未定级")
TITLES = ("chief", "associate_chief", "attending", "resident")
REGISTRATION_LEVELS = ("general", "expert", "special")
GRANULARITIES = ("day", "half_day", "time_band")
RECORD_REQUIREMENTS = ("none", "existing_record_required", "auto_create_in_his", "create_at_hospital")
# which patient cancellations count toward the blacklist: every one (held or paid), paid only, none
STRIKE_CANCELLATIONS = ("all", "paid_only", "none")


class Hospital(IdMixin, Base):
    __tablename__ = "hospitals"

    name: Mapped[str] = mapped_column(String(100))
    short_name: Mapped[str | None] = mapped_column(String(50))
    level: Mapped[str] = mapped_column(String(20))
    city: Mapped[str] = mapped_column(String(50), index=True)
    district: Mapped[str] = mapped_column(String(50))
    address: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str] = mapped_column(String(40))
    latitude: Mapped[float] = mapped_column(Float)
    longitude: Mapped[float] = mapped_column(Float)
    introduction: Mapped[str] = mapped_column(Text, default="")
    timezone: Mapped[str] = mapped_column(String(40), default="Asia/Shanghai")
    his_mode: Mapped[str] = mapped_column(String(20), default="local")
    entrance: Mapped[str] = mapped_column(String(20), default="department", server_default="department")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # search keys, derived from the name when it is written
    name_pinyin: Mapped[str] = mapped_column(String(400), default="")
    name_initials: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (CheckConstraint(f"his_mode IN {HIS_MODES!r}", name="his_mode"),
                      CheckConstraint(f"entrance IN {ENTRANCES!r}", name="entrance"))


class HospitalRules(Base):
    """Per-hospital booking rules (DESIGN.md section 4): the storage of `catalog.rules.Rules`.

    Only `guahao.catalog.rules` reads and writes this table (and the hold's one joined SELECT in
    `booking/context.py`); every feature gets the frozen `Rules` snapshot from there. A
    hospital without a row runs on these column defaults."""

    __tablename__ = "hospital_rules"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), primary_key=True)
    hold_minutes: Mapped[int] = mapped_column(Integer, default=15)
    release_days_ahead: Mapped[int] = mapped_column(Integer, default=7)
    release_time: Mapped[dt.time] = mapped_column(Time, default=dt.time(8, 0))
    # booking closes this many minutes before the period starts (0 = at the start)
    close_minutes_before_start: Mapped[int] = mapped_column(Integer, default=0)
    slot_granularity: Mapped[str] = mapped_column(String(20), default="time_band")
    one_per_department_per_day: Mapped[bool] = mapped_column(Boolean, default=True)
    max_live_bookings_per_person: Mapped[int] = mapped_column(Integer, default=3)
    # online cancellation allowed until this many minutes before 00:00 of the visit day
    cancel_minutes_before_visit_day: Mapped[int] = mapped_column(Integer, default=0)
    restriction_threshold: Mapped[int] = mapped_column(Integer, default=3)
    restriction_window_days: Mapped[int] = mapped_column(Integer, default=30)
    restriction_days: Mapped[int] = mapped_column(Integer, default=30)
    record_requirement: Mapped[str] = mapped_column(String(40), default="none")
    verification_required: Mapped[bool] = mapped_column(Boolean, default=True)
    reminder_time: Mapped[dt.time] = mapped_column(Time, default=dt.time(18, 0))
    strike_cancellations: Mapped[str] = mapped_column(String(20), default="all", server_default="all")
    # booking SMS also go to the patient's (就诊人) own phone when it differs from the account's
    sms_to_patient_phone: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # HIS hospitals: the booking and its SMS show the visit number the HIS gave (就诊序号) instead of ours
    use_his_visit_no: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # 放号 by draw (issue 13): `fifo` (first come) or `draw` (摇号, guahao.draw); a department or a
    # schedule may override it (draw's release_mode_settings). The draw takes entries for
    # draw_window_seconds from the release instant, and draw_prequeue_minutes before it.
    release_mode: Mapped[str] = mapped_column(String(10), default="fifo", server_default="fifo")
    draw_window_seconds: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    draw_prequeue_minutes: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the hospital's clinic hours per period (wall clock, the hospital's zone); NULL = the
    # platform's default hours (catalog.rules.DEFAULT_CLINIC_HOURS). Edited on their own
    # (catalog.rules.do_update_clinic_hours), not with the booking rules.
    morning_opens: Mapped[dt.time | None] = mapped_column(Time)
    morning_closes: Mapped[dt.time | None] = mapped_column(Time)
    afternoon_opens: Mapped[dt.time | None] = mapped_column(Time)
    afternoon_closes: Mapped[dt.time | None] = mapped_column(Time)
    evening_opens: Mapped[dt.time | None] = mapped_column(Time)
    evening_closes: Mapped[dt.time | None] = mapped_column(Time)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint("hold_minutes BETWEEN 5 AND 30", name="hold_minutes"),
        CheckConstraint("release_days_ahead BETWEEN 1 AND 90", name="release_days_ahead"),
        CheckConstraint(f"slot_granularity IN {GRANULARITIES!r}", name="slot_granularity"),
        CheckConstraint(f"record_requirement IN {RECORD_REQUIREMENTS!r}", name="record_requirement"),
        CheckConstraint(f"strike_cancellations IN {STRIKE_CANCELLATIONS!r}", name="strike_cancellations"),
        CheckConstraint("close_minutes_before_start BETWEEN 0 AND 1440", name="close_minutes_before_start"),
        CheckConstraint("max_live_bookings_per_person BETWEEN 1 AND 20", name="max_live_bookings_per_person"),
        CheckConstraint("cancel_minutes_before_visit_day BETWEEN 0 AND 10080", name="cancel_minutes_before_visit_day"),
        CheckConstraint("restriction_threshold BETWEEN 1 AND 100", name="restriction_threshold"),
        CheckConstraint("restriction_window_days BETWEEN 1 AND 365", name="restriction_window_days"),
        CheckConstraint("restriction_days BETWEEN 1 AND 365", name="restriction_days"),
        CheckConstraint("release_mode IN ('fifo', 'draw')", name="release_mode"),
        CheckConstraint("draw_window_seconds BETWEEN 10 AND 60", name="draw_window_seconds"),
        CheckConstraint("draw_prequeue_minutes BETWEEN 0 AND 60", name="draw_prequeue_minutes"),
    )


class Department(IdMixin, Base):
    __tablename__ = "departments"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("departments.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    introduction: Mapped[str] = mapped_column(Text, default="")
    location: Mapped[str] = mapped_column(String(200), default="")
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    min_age: Mapped[int | None] = mapped_column(Integer)
    max_age: Mapped[int | None] = mapped_column(Integer)
    allowed_sex: Mapped[str | None] = mapped_column(String(1))  # "M" / "F" / NULL = any
    name_pinyin: Mapped[str] = mapped_column(String(400), default="")
    name_initials: Mapped[str] = mapped_column(String(100), default="")
    his_code: Mapped[str | None] = mapped_column(String(64))  # the department's code in the hospital's HIS

    __table_args__ = (
        CheckConstraint("allowed_sex IS NULL OR allowed_sex IN ('M', 'F')", name="allowed_sex"),
        UniqueConstraint("hospital_id", "parent_id", "name"),
        UniqueConstraint("hospital_id", "his_code"),
    )


class Doctor(IdMixin, Base):
    __tablename__ = "doctors"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[int] = mapped_column(BigId, ForeignKey("departments.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(50))
    title: Mapped[str] = mapped_column(String(20))
    registration_level: Mapped[str] = mapped_column(String(20), default="general")
    specialty: Mapped[str] = mapped_column(String(400), default="")
    introduction: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    name_pinyin: Mapped[str] = mapped_column(String(400), default="")
    name_initials: Mapped[str] = mapped_column(String(100), default="")
    his_code: Mapped[str | None] = mapped_column(String(64))  # the doctor's code in the hospital's HIS

    __table_args__ = (
        CheckConstraint(f"title IN {TITLES!r}", name="title"),
        UniqueConstraint("hospital_id", "his_code"),
        CheckConstraint(f"registration_level IN {REGISTRATION_LEVELS!r}", name="registration_level"),
    )


class DoctorPhoto(IdMixin, Base):
    """A doctor's portrait, kept in the database (not on a disk) so it works the same on SQLite
    and PostgreSQL, with several app processes, and is in every backup. Small: at most 2 MB."""

    __tablename__ = "doctor_photos"

    doctor_id: Mapped[int] = mapped_column(BigId, ForeignKey("doctors.id", ondelete="CASCADE"), unique=True)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(40))
    etag: Mapped[str] = mapped_column(String(64))  # sha256 of the content, hex
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class FeeRule(IdMixin, Base):
    """Fees in fen for a registration level; the consultation fee depends on the doctor's title.

    `title` is 'none' for department general clinics that have no doctor.
    """

    __tablename__ = "fee_rules"

    hospital_id: Mapped[int] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"))
    registration_level: Mapped[str] = mapped_column(String(20))
    title: Mapped[str] = mapped_column(String(20))
    registration_fee: Mapped[int] = mapped_column(Integer, default=0)
    consultation_fee: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint("hospital_id", "registration_level", "title"),
        CheckConstraint("registration_fee >= 0 AND consultation_fee >= 0", name="fees_non_negative"),
    )




@event.listens_for(Hospital, "before_insert")
@event.listens_for(Hospital, "before_update")
@event.listens_for(Department, "before_insert")
@event.listens_for(Department, "before_update")
@event.listens_for(Doctor, "before_insert")
@event.listens_for(Doctor, "before_update")
def _refresh_search_keys(_mapper, _connection, target) -> None:
    """A safety net behind the service functions: every ORM write of a name (builders, the
    demo seeder, admin tools) refreshes its search keys. Bulk UPDATE statements bypass it."""
    from guahao.catalog.search import apply_search_keys  # search imports these models

    apply_search_keys(target)
