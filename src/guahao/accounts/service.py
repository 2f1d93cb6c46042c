"""Accounts: SMS-code login and server-side sessions."""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.accounts.models import AuthSession


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def do_create_session(session: AsyncSession, *, now: dt.datetime, ttl: dt.timedelta,
                            account_id: int | None = None, staff_id: int | None = None) -> str:
    """Create a session row and return the opaque token (shown once, stored only hashed)."""
    token = secrets.token_urlsafe(32)
    session.add(AuthSession(token_hash=_token_hash(token), account_id=account_id, staff_id=staff_id,
                            created_at=now, expires_at=now + ttl))
    await session.flush()
    return token


async def resolve_session(session: AsyncSession, token: str, *, now: dt.datetime) -> AuthSession | None:
    row = await session.scalar(select(AuthSession).where(AuthSession.token_hash == _token_hash(token)))
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    return row


async def do_revoke_session(session: AsyncSession, session_id: int, *, now: dt.datetime) -> None:
    await session.execute(
        update(AuthSession).where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None)).values(revoked_at=now)
    )
