"""TOTP second factor (RFC 6238, via `pyotp`) for platform operators and hospital admins.

Enrolment: `do_enroll` stores a fresh secret (encrypted at rest) and returns it once, as an
otpauth:// URI for the authenticator app; `do_confirm` switches it on with a first valid
code. From then on login needs a code. A code is accepted for its 30-second step and one
step either side (clock drift), and never twice: `last_step` remembers the newest accepted
step, and the check-and-update runs under the row's lock. Wrong codes count toward the same
per-username lockout as wrong passwords (the login route counts every attempt first).
"""
from __future__ import annotations

import datetime as dt
import hmac

import pyotp
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.core import audit
from guahao.core.errors import Forbidden
from guahao.staff.errors import InvalidOtp, TotpAlreadyEnabled, TotpNotEnrolled
from guahao.staff.models import StaffTotp, StaffUser

ISSUER = "guahao"
ROLES_WITH_TOTP = ("platform_operator", "hospital_admin")
DRIFT_STEPS = 1


def _matching_step(secret: str, code: str, now: dt.datetime) -> int | None:
    """The time step (of now ± DRIFT_STEPS) whose code is `code`, else None."""
    code = code.strip()
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    for offset in range(-DRIFT_STEPS, DRIFT_STEPS + 1):
        at = now + dt.timedelta(seconds=offset * totp.interval)
        if hmac.compare_digest(totp.at(at), code):
            return totp.timecode(at)
    return None


async def _row(session: AsyncSession, staff_id: int, *, for_update: bool = False) -> StaffTotp | None:
    stmt = select(StaffTotp).where(StaffTotp.staff_id == staff_id)
    if for_update:
        stmt = stmt.with_for_update()
    return await session.scalar(stmt)


async def is_enabled(session: AsyncSession, staff_id: int) -> bool:
    row = await _row(session, staff_id)
    return row is not None and row.confirmed_at is not None


async def do_enroll(session: AsyncSession, user: StaffUser, *, now: dt.datetime) -> str:
    """A new pending secret for `user`; returns the otpauth:// URI (shown to the user once)."""
    if user.role not in ROLES_WITH_TOTP:
        raise Forbidden()
    row = await _row(session, user.id, for_update=True)
    if row is not None and row.confirmed_at is not None:
        raise TotpAlreadyEnabled()
    secret = pyotp.random_base32()
    if row is None:
        session.add(StaffTotp(staff_id=user.id, secret=secret, created_at=now))
    else:
        row.secret, row.created_at, row.last_step = secret, now, None
    await session.flush()
    await audit.do_record(session, now=now, action="staff.totp_enroll", object_type="staff_user", object_id=user.id,
                          hospital_id=user.hospital_id, staff_id=user.id, detail={})
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=ISSUER)


async def _accept(row: StaffTotp, code: str, now: dt.datetime) -> None:
    step = _matching_step(row.secret, code, now)
    if step is None or (row.last_step is not None and step <= row.last_step):
        raise InvalidOtp()
    row.last_step = step


async def do_confirm(session: AsyncSession, user: StaffUser, code: str, *, now: dt.datetime) -> None:
    """Switch the pending secret on with a first valid code."""
    row = await _row(session, user.id, for_update=True)
    if row is None:
        raise TotpNotEnrolled()
    if row.confirmed_at is not None:
        raise TotpAlreadyEnabled()
    await _accept(row, code, now)
    row.confirmed_at = now
    await session.flush()
    await audit.do_record(session, now=now, action="staff.totp_enable", object_type="staff_user", object_id=user.id,
                          hospital_id=user.hospital_id, staff_id=user.id, detail={})


async def do_disable(session: AsyncSession, user: StaffUser, code: str, *, now: dt.datetime) -> None:
    """Switch the second factor off; proven with a current code."""
    row = await _row(session, user.id, for_update=True)
    if row is None or row.confirmed_at is None:
        raise TotpNotEnrolled()
    await _accept(row, code, now)
    await session.delete(row)
    await session.flush()
    await audit.do_record(session, now=now, action="staff.totp_disable", object_type="staff_user", object_id=user.id,
                          hospital_id=user.hospital_id, staff_id=user.id, detail={})


async def do_check_login(session: AsyncSession, staff_id: int, code: str | None, *, now: dt.datetime) -> bool:
    """At login: True when the user has no second factor, or `code` is a fresh valid one (then
    recorded as used). False when a code is needed and none was given; InvalidOtp for a wrong
    or replayed code."""
    row = await _row(session, staff_id, for_update=True)
    if row is None or row.confirmed_at is None:
        return True
    if not code:
        return False
    await _accept(row, code, now)
    await session.flush()
    return True


async def do_reset(session: AsyncSession, user: StaffUser, *, actor_staff_id: int, now: dt.datetime) -> None:
    """Remove a user's second factor (lost phone) on behalf of an operator or their hospital's
    admin; the user enrols again. Audited with who did it."""
    row = await _row(session, user.id, for_update=True)
    if row is None:
        raise TotpNotEnrolled()
    await session.delete(row)
    await session.flush()
    await audit.do_record(session, now=now, action="staff.totp_reset", object_type="staff_user", object_id=user.id,
                          hospital_id=user.hospital_id, staff_id=actor_staff_id, detail={})
