"""The staff login flow, shared by the JSON route and the /staff/ login page so that the
lockout, the second factor and the audit of a lock live in one place.

Order matters (see staff/lockout.py): the attempt is counted and committed before the
password is checked; argon2 runs outside any write transaction; the TOTP check, the lockout
reset and the new session are one transaction. The caller applies its rate limit first.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import structlog

from guahao.config import Settings
from guahao.core import audit
from guahao.core.db import Database
from guahao.staff import lockout, totp
from guahao.staff import service as staff_service
from guahao.staff.errors import InvalidCredentials, InvalidOtp, LoginLocked, OtpRequired
from guahao.staff.models import StaffUser

log = structlog.get_logger("guahao.staff")
LOGIN_LIMIT = "5/minute"


@dataclass(frozen=True)
class LoggedIn:
    user: StaffUser
    token: str


def policy_of(settings: Settings) -> lockout.LockoutPolicy:
    return lockout.LockoutPolicy(max_failures=settings.staff_login_max_failures,
                                 window=dt.timedelta(minutes=settings.staff_login_window_minutes),
                                 lock=dt.timedelta(minutes=settings.staff_login_lock_minutes))


async def do_login(db: Database, *, username: str, password: str, otp: str | None, now: dt.datetime,
                   policy: lockout.LockoutPolicy) -> LoggedIn:
    """A new staff session for these credentials, or LoginLocked / InvalidCredentials /
    OtpRequired / InvalidOtp. Each call is one counted attempt."""
    username = staff_service.normalize_username(username)
    async with db.begin() as session:
        attempt = await lockout.do_count_attempt(session, username, now=now, policy=policy)
    if not attempt.allowed:
        raise _locked(attempt, now)
    try:
        async with db.read() as session:
            user = await staff_service.authenticate(session, username, password)
    except InvalidCredentials:
        if attempt.locks_on_failure:
            await _record_lock(db, username, attempt, now=now)
        raise
    try:
        async with db.begin() as session:
            if not await totp.do_check_login(session, user.id, otp, now=now):
                raise OtpRequired()  # the attempt stays counted, like a wrong password
            await lockout.do_clear(session, username)
            token = await staff_service.do_open_session(session, user, now=now, password=password)
    except InvalidOtp:
        if attempt.locks_on_failure:
            await _record_lock(db, username, attempt, now=now)
        raise
    log.info("staff_login", staff_id=user.id)
    return LoggedIn(user=user, token=token)


def _locked(attempt: lockout.Attempt, now: dt.datetime) -> LoginLocked:
    seconds = int((attempt.locked_until - now).total_seconds()) if attempt.locked_until else 60
    seconds = max(1, seconds)
    return LoginLocked(retry_after=seconds, minutes=max(1, -(-seconds // 60)))


async def _record_lock(db: Database, username: str, attempt: lockout.Attempt, *, now: dt.datetime) -> None:
    """The failure that locked a username: an audit row the hospital's admins (or, for
    unknown and operator names, the operators) can see, and a warning in the log. The actor
    is unknown, so staff_id stays empty; the locked user's id goes in the detail."""
    async with db.begin() as session:
        user = await staff_service.get_by_username(session, username)
        await audit.do_record(session, now=now, action="staff.login_locked", object_type="staff_login",
                              object_id=username[:40], hospital_id=user.hospital_id if user else None,
                              detail={"failures": attempt.position, "locked_until": attempt.locked_until,
                                      "locked_staff_id": user.id if user else None})
    log.warning("staff_login_locked", locked_staff_id=user.id if user else None)
