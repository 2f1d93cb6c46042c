"""Hospital staff and platform operators (username + argon2 password)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from guahao.core.crypto import Encrypted, encrypted_rows
from guahao.core.db import Base, BigId, IdMixin, UTCDateTime

ROLES = ("platform_operator", "hospital_admin", "scheduler", "front_desk")


class StaffUser(IdMixin, Base):
    __tablename__ = "staff_users"

    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    display_name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(30))
    hospital_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("hospitals.id", ondelete="CASCADE"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        CheckConstraint(f"role IN {ROLES!r}", name="role"),
        # the operator is platform-wide; every other role belongs to exactly one hospital
        CheckConstraint("(role = 'platform_operator') = (hospital_id IS NULL)", name="role_scope"),
    )


class StaffLoginThrottle(Base):
    """Failed password logins per username, for the lockout (staff/lockout.py).

    Keyed by the normalised username whether or not such a user exists, so a lockout answer
    does not tell which usernames are real. A row whose window and lock have both passed
    means nothing and may be purged."""

    __tablename__ = "staff_login_throttles"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


@encrypted_rows
class StaffTotp(IdMixin, Base):
    """A staff user's TOTP second factor (RFC 6238, through pyotp).

    The secret is encrypted at rest like personal data. Until `confirmed_at` is set the
    enrolment is pending and login does not ask for a code; `last_step` is the time step of
    the last code accepted, so a code is never accepted twice."""

    __tablename__ = "staff_totp"

    # an id of its own: the key rotation pass (keys/rotation.py) walks encrypted tables by id
    staff_id: Mapped[int] = mapped_column(BigId, ForeignKey("staff_users.id", ondelete="CASCADE"), unique=True)
    secret: Mapped[str] = mapped_column(Encrypted("staff_totp.secret"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_step: Mapped[int | None] = mapped_column(BigInteger)
    row_key: Mapped[str] = mapped_column(String(32), unique=True)


class MaintenanceWindow(Base):
    """The platform's maintenance switch (ops: staff/maintenance.py), one row (id 1).

    While `active`, patients' requests are answered with 503 and the expected end; staff,
    payment callbacks and the jobs keep running (core/maintenance.py)."""

    __tablename__ = "maintenance_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(200))  # shown to patients, as written
    set_by: Mapped[int | None] = mapped_column(BigId, ForeignKey("staff_users.id", ondelete="SET NULL"))
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
