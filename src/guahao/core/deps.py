"""FastAPI dependency aliases shared by every feature's router."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from guahao.core.clock import Clock
from guahao.core.db import Database
from guahao.core.errors import Forbidden, NotFound, Unauthenticated
from guahao.core.i18n import negotiate
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


async def request_locale(request: Request) -> str:
    return negotiate(request.headers.get("accept-language"))


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

    def require(self, *roles: str) -> "StaffPrincipal":
        if self.role not in roles and not self.is_operator:
            raise Forbidden()
        return self

    def ensure_hospital(self, hospital_id: int) -> None:
        """Staff of another hospital learn nothing about this one: same answer as a missing id."""
        if not self.is_operator and self.hospital_id != hospital_id:
            raise NotFound("hospital")


async def _resolve_account(request: Request, db: Database, clock: Clock, idempotency_key: str | None = None):
    from guahao.accounts import service as accounts_service

    token = bearer_or_cookie(request)
    if not token:
        raise Unauthenticated()
    async with db.peek() as conn:
        auth = await accounts_service.resolve_token(conn, token, now=clock.now(), idempotency_key=idempotency_key)
    if auth is None or auth.account_id is None:
        raise Unauthenticated()
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
    from guahao.accounts import service as accounts_service
    from guahao.staff import service as staff_service

    token = bearer_or_cookie(request)
    if not token:
        raise Unauthenticated()
    async with db.read() as session:
        auth = await accounts_service.resolve_session(session, token, now=clock.now())
        if auth is None or auth.staff_id is None:
            raise Unauthenticated()
        staff = await staff_service.get(session, auth.staff_id)
    if staff is None or not staff.active:
        raise Unauthenticated()
    return StaffPrincipal(staff_id=staff.id, session_id=auth.id, role=staff.role, hospital_id=staff.hospital_id)


CurrentAccount = Annotated[AccountPrincipal, Depends(current_account)]
CurrentAccountWithKey = Annotated[KeyedAccount, Depends(current_account_with_key)]
CurrentStaff = Annotated[StaffPrincipal, Depends(current_staff)]
