"""Staff users: creation, password login (argon2), lookups.

Argon2 costs tens of milliseconds of CPU on purpose, so hashing and verifying run in a
thread (the event loop keeps serving) and before any statement of the unit of work (on SQLite
the write lock is taken at the first statement, not while we hash).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts import service as accounts_service
from guahao.catalog import service as catalog_service
from guahao.config import Settings
from guahao.core import audit
from guahao.core.clock import SystemClock
from guahao.core.db import Database, create_database
from guahao.core.deps import StaffPrincipal
from guahao.staff.errors import InvalidCredentials, InvalidRole, InvalidUsername, RoleScope, UsernameTaken, WeakPassword
from guahao.staff.models import ROLES, StaffUser

OPERATOR = "platform_operator"
HOSPITAL_ADMIN = "hospital_admin"
SCHEDULER = "scheduler"
FRONT_DESK = "front_desk"
MIN_PASSWORD_LENGTH = 10
USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")
SESSION_TTL = dt.timedelta(hours=12)  # a working day; staff sessions are more powerful than patients'

_hasher = PasswordHasher()


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def normalize_username(username: str) -> str:
    return username.strip().lower()


async def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(min_length=MIN_PASSWORD_LENGTH)
    return await asyncio.to_thread(_hasher.hash, password)


async def _verify(password_hash: str, password: str) -> bool:
    def check() -> bool:
        try:
            return _hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(check)


async def get(session: AsyncSession, staff_id: int) -> StaffUser | None:
    return await session.get(StaffUser, staff_id)


async def get_by_username(session: AsyncSession, username: str) -> StaffUser | None:
    return await session.scalar(select(StaffUser).where(StaffUser.username == normalize_username(username)))


async def list_staff(session: AsyncSession, *, hospital_id: int | None) -> list[StaffUser]:
    query = select(StaffUser).order_by(StaffUser.id)
    if hospital_id is not None:
        query = query.where(StaffUser.hospital_id == hospital_id)
    return list(await session.scalars(query))


async def authenticate(session: AsyncSession, username: str, password: str) -> StaffUser:
    """The active staff user with these credentials, or InvalidCredentials.

    An unknown username still costs one argon2 verification, so response times do not tell
    which usernames exist.
    """
    user = await get_by_username(session, username)
    if user is None:
        await _verify(_dummy_hash(), password)
        raise InvalidCredentials()
    if not await _verify(user.password_hash, password) or not user.active:
        raise InvalidCredentials()
    return user


def validate_new_staff(*, username: str, role: str, hospital_id: int | None, password: str) -> str:
    """Checks that need no database; returns the normalised username."""
    name = normalize_username(username)
    if not USERNAME_RE.match(name):
        raise InvalidUsername()
    if role not in ROLES:
        raise InvalidRole(role=role)
    if (role == OPERATOR) != (hospital_id is None):
        raise RoleScope()
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPassword(min_length=MIN_PASSWORD_LENGTH)
    return name


async def do_create_staff(session: AsyncSession, *, username: str, password: str, role: str,
                          hospital_id: int | None, display_name: str, now: dt.datetime,
                          actor_staff_id: int | None = None) -> StaffUser:
    """Create a staff user and its audit row. Helpers never commit: the caller's unit of work does."""
    name = validate_new_staff(username=username, role=role, hospital_id=hospital_id, password=password)
    password_hash = await hash_password(password)  # before the first statement, see module doc
    if hospital_id is not None:  # NotFound("hospital") for an unknown one; an inactive one may have staff
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    if await get_by_username(session, name) is not None:
        raise UsernameTaken(username=name)
    user = StaffUser(username=name, password_hash=password_hash, display_name=display_name.strip() or name,
                     role=role, hospital_id=hospital_id, active=True, created_at=now)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent creation of the same username won
        raise UsernameTaken(username=name) from exc
    await audit.do_record(session, now=now, action="staff.create", object_type="staff_user", object_id=user.id,
                          hospital_id=hospital_id, staff_id=actor_staff_id,
                          detail={"username": name, "role": role})
    return user


async def new_password_hash(user: StaffUser, *, current_password: str, new_password: str) -> str:
    """Check the current password and hash the new one (both argon2, in a thread, before the
    unit of work that stores it). InvalidCredentials when the current one is wrong."""
    if not await _verify(user.password_hash, current_password):
        raise InvalidCredentials()
    if new_password == current_password:
        raise WeakPassword(min_length=MIN_PASSWORD_LENGTH)
    return await hash_password(new_password)


async def do_set_password(session: AsyncSession, staff_id: int, password_hash: str, *, now: dt.datetime,
                          keep_session_id: int | None) -> None:
    """Store a new password hash, end the user's other sessions, audit the change."""
    user = await session.get_one(StaffUser, staff_id, with_for_update=True)
    user.password_hash = password_hash
    await session.flush()
    ended = await accounts_service.do_revoke_staff_sessions(session, staff_id, now=now, keep=keep_session_id)
    await audit.do_record(session, now=now, action="staff.password_change", object_type="staff_user",
                          object_id=staff_id, hospital_id=user.hospital_id, staff_id=staff_id,
                          detail={"sessions_ended": ended})


async def do_open_session(session: AsyncSession, user: StaffUser, *, now: dt.datetime,
                          password: str | None = None) -> str:
    """Open a staff session (and upgrade the password hash if the hasher's parameters changed)."""
    if password is not None and _hasher.check_needs_rehash(user.password_hash):
        fresh = await asyncio.to_thread(_hasher.hash, password)
        row = await session.get(StaffUser, user.id)
        if row is not None:
            row.password_hash = fresh
    return await accounts_service.do_create_session(session, now=now, ttl=SESSION_TTL, staff_id=user.id)


async def create_staff_cli(settings: Settings, *, username: str, role: str, password: str,
                           hospital_id: int | None, display_name: str) -> int:
    """`guahao create-staff`: its own database connection, one transaction, the new id."""
    db = create_database(settings.database_url, pool_size=1)
    try:
        async with db.begin() as session:
            user = await do_create_staff(session, username=username, password=password, role=role,
                                         hospital_id=hospital_id, display_name=display_name,
                                         now=SystemClock().now())
            return user.id
    finally:
        await db.dispose()


async def resolve_principal(db: Database, token: str, *, now: dt.datetime) -> StaffPrincipal | None:
    """The active staff user behind a session token (core.deps' `Authenticator.resolve_staff`)."""
    async with db.read() as session:
        auth = await accounts_service.resolve_session(session, token, now=now)
        if auth is None or auth.staff_id is None:
            return None
        staff = await get(session, auth.staff_id)
    if staff is None or not staff.active:
        return None
    return StaffPrincipal(staff_id=staff.id, session_id=auth.id, role=staff.role, hospital_id=staff.hospital_id)
