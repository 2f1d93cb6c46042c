"""FastAPI dependency aliases shared by every feature's router.

Who the caller is gets decided by the accounts and staff features, which sit above core.
Core names what it needs from them (`Authenticator`, a port) and the app wires the two
features' functions into it at start (`app.state.authenticator`), so core imports nothing
above itself and every router keeps using `CurrentAccount` / `CurrentStaff` from here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from guahao.core.clock import Clock
from guahao.core.db import Database
from guahao.core.errors import Forbidden, NotFound, Unauthenticated
from guahao.core.i18n import request_language
from guahao.core.ratelimit import RateLimiter

SESSION_COOKIE = "guahao_session"

# Dependencies are `async def` even when they only read app state: FastAPI runs plain `def`
# dependencies in a worker thread, three thread handoffs per request on the hottest path.


async def get_database(request: Request) -> Database:
    return request.app.state.db


async def get_clock(request: Request) -> Clock:
    return request.app.state.clock


async def get_limiter(request: Request) -> RateLimiter:
    return request.app.state.limiter


ACCOUNT_LOCALE = "account_locale"  # request.state attribute: the caller's saved language


async def request_locale(request: Request) -> str:
    """core.i18n.request_language: Accept-Language when sent, else the account's saved
    language. The saved language arrives with the session look-up (`_resolve_account` keeps
    it on request.state); a route that names its `Locale` before its account, called with a
    token and no Accept-Language, pays one look-up of its own here."""
    if request.headers.get("accept-language"):
        return request_language(request.headers, None)
    if not hasattr(request.state, ACCOUNT_LOCALE):
        token = bearer_or_cookie(request)
        saved = None
        if token:
            state = request.app.state
            async with state.db.peek() as conn:
                auth = await state.authenticator.resolve_token(conn, token, now=state.clock.now())
            saved = getattr(auth, "locale", None) if auth is not None else None
        setattr(request.state, ACCOUNT_LOCALE, saved)
    return request_language(request.headers, getattr(request.state, ACCOUNT_LOCALE))


Db = Annotated[Database, Depends(get_database)]
ClockDep = Annotated[Clock, Depends(get_clock)]
Limiter = Annotated[RateLimiter, Depends(get_limiter)]
Locale = Annotated[str, Depends(request_locale)]


def bearer_or_cookie(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return request.cookies.get(SESSION_COOKIE)


@dataclass(frozen=True)
class AccountPrincipal:
    account_id: int
    session_id: int


@dataclass(frozen=True)
class StaffPrincipal:
    staff_id: int
    session_id: int
    role: str
    hospital_id: int | None

    @property
    def is_operator(self) -> bool:
        return self.role == "platform_operator"

    def require(self, *roles: str) -> StaffPrincipal:
        if self.role not in roles and not self.is_operator:
            raise Forbidden()
        return self

    def ensure_hospital(self, hospital_id: int) -> None:
        """Staff of another hospital learn nothing about this one: same answer as a missing id."""
        if not self.is_operator and self.hospital_id != hospital_id:
            raise NotFound("hospital")


class Authenticator(Protocol):
    """The port core's dependencies call; `guahao.app` wires accounts' and staff's answers."""

    async def resolve_token(self, conn: AsyncConnection, token: str, *, now: dt.datetime,
                            idempotency_key: str | None = None) -> Any:
        """A row with id, account_id, staff_id (and the key's stored answer), or None."""

    async def resolve_staff(self, db: Database, token: str, *, now: dt.datetime) -> StaffPrincipal | None:
        """The active staff user holding this session token, or None."""


def _authenticator(request: Request) -> Authenticator:
    return request.app.state.authenticator


async def _resolve_account(request: Request, db: Database, clock: Clock, idempotency_key: str | None = None):
    token = bearer_or_cookie(request)
    if not token:
        raise Unauthenticated()
    async with db.peek() as conn:
        auth = await _authenticator(request).resolve_token(conn, token, now=clock.now(),
                                                           idempotency_key=idempotency_key)
    if auth is None or auth.account_id is None:
        raise Unauthenticated()
    setattr(request.state, ACCOUNT_LOCALE, getattr(auth, "locale", None))
    return auth


async def current_account(request: Request, db: Db, clock: ClockDep) -> AccountPrincipal:
    auth = await _resolve_account(request, db, clock)
    return AccountPrincipal(account_id=auth.account_id, session_id=auth.id)


@dataclass(frozen=True)
class KeyedAccount:
    """The caller of an idempotent write and the stored answer row of its Idempotency-Key.

    The hold is the platform's hottest write, so authentication and the key look-up share one
    statement; this dependency is the one place that does it (routes that need it name it)."""

    principal: AccountPrincipal
    key: str
    stored: Any  # a row with status_code, request_hash, response, replay_until (all NULL: no answer)


async def current_account_with_key(request: Request, db: Db, clock: ClockDep) -> KeyedAccount:
    from guahao.core import idempotency

    raw = request.headers.get("idempotency-key")
    shaped = raw if raw and len(raw) <= 100 and raw.isprintable() else None
    auth = await _resolve_account(request, db, clock, idempotency_key=shaped)  # 401 before 400
    key = idempotency.validate_key(raw)
    return KeyedAccount(AccountPrincipal(account_id=auth.account_id, session_id=auth.id), key, auth)


async def current_staff(request: Request, db: Db, clock: ClockDep) -> StaffPrincipal:
    token = bearer_or_cookie(request)
    if not token:
        raise Unauthenticated()
    principal = await _authenticator(request).resolve_staff(db, token, now=clock.now())
    if principal is None:
        raise Unauthenticated()
    return principal


CurrentAccount = Annotated[AccountPrincipal, Depends(current_account)]
CurrentAccountWithKey = Annotated[KeyedAccount, Depends(current_account_with_key)]
CurrentStaff = Annotated[StaffPrincipal, Depends(current_staff)]
