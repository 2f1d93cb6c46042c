"""HTTP routes of the accounts feature: SMS codes, login, logout, the account itself."""
from __future__ import annotations

import datetime as dt

import structlog
from fastapi import APIRouter, Request, Response, status

from guahao.accounts import service as accounts_service
from guahao.accounts.cookies import clear_session_cookie, set_session_cookie
from guahao.accounts.errors import SmsUnavailable
from guahao.accounts.schemas import AccountRead, AccountUpdate, LoginCreate, LoginRead, SmsCodeCreate, SmsCodeSent
from guahao.config import Settings
from guahao.core.clock import SHANGHAI
from guahao.core.crypto import mask_phone
from guahao.core.deps import ClockDep, CurrentAccount, Db, Limiter
from guahao.core.errors import NotFound
from guahao.core.localtime import localize

router = APIRouter(prefix="/api/v1", tags=["accounts"])
log = structlog.get_logger("guahao.accounts")


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _account_read(account) -> AccountRead:
    return AccountRead(id=account.id, phone=mask_phone(account.phone), locale=account.locale)


@router.post("/auth/sms-codes", status_code=status.HTTP_202_ACCEPTED, response_model=SmsCodeSent)
async def send_sms_code(body: SmsCodeCreate, request: Request, db: Db, clock: ClockDep,
                        limiter: Limiter) -> SmsCodeSent:
    """Send a 6-digit login code to a mainland mobile number (valid 5 minutes, single use)."""
    settings = _settings(request)
    phone = accounts_service.normalize_mobile(body.phone)
    # per client first, so that walking through many numbers from one address is caught
    await limiter.hit(settings.sms_send_limit_per_client, "sms-client", client_address(request))
    await limiter.hit(settings.sms_send_limit_per_number, "sms-number", accounts_service.phone_hash(phone))
    ttl = dt.timedelta(seconds=settings.sms_code_ttl_seconds)
    async with db.begin() as session:
        code = await accounts_service.do_issue_code(session, phone, now=clock.now(), ttl=ttl)
    try:
        await request.app.state.sms.send(phone, "login_code", {"code": code})
    except Exception as exc:
        log.warning("sms_send_failed", error_type=type(exc).__name__)
        raise SmsUnavailable() from exc
    return SmsCodeSent(phone=mask_phone(phone), expires_in=settings.sms_code_ttl_seconds)


@router.post("/auth/login", response_model=LoginRead)
async def login(body: LoginCreate, request: Request, response: Response, db: Db, clock: ClockDep) -> LoginRead:
    """Log in (and sign up on first login) with the number and the code sent to it."""
    settings = _settings(request)
    phone = accounts_service.normalize_mobile(body.phone)
    ttl = dt.timedelta(hours=settings.session_ttl_hours)
    async with db.begin() as session:
        outcome = await accounts_service.do_login(session, phone, body.code, now=clock.now(),
                                                  max_attempts=settings.sms_code_max_attempts, session_ttl=ttl)
    # raised only now: a wrong try was committed above and counts against the code
    if not isinstance(outcome, accounts_service.LoginResult):
        raise outcome
    set_session_cookie(response, outcome.token, settings=settings, ttl=ttl)
    log.info("account_login", account_id=outcome.account.id)
    return localize(LoginRead(token=outcome.token, expires_at=outcome.expires_at,
                              account=_account_read(outcome.account)), SHANGHAI)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentAccount, request: Request, db: Db, clock: ClockDep) -> Response:
    """Revoke the current session; its token stops working at once."""
    async with db.begin() as session:
        await accounts_service.do_revoke_session(session, principal.session_id, now=clock.now())
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_session_cookie(response, settings=_settings(request))
    return response


@router.get("/me", response_model=AccountRead)
async def read_me(principal: CurrentAccount, db: Db) -> AccountRead:
    """The logged-in account: its masked phone number, language and consents."""
    async with db.read() as session:
        account = await accounts_service.get(session, principal.account_id)
    if account is None:
        raise NotFound("account")
    return _account_read(account)


@router.patch("/me", response_model=AccountRead)
async def update_me(body: AccountUpdate, principal: CurrentAccount, db: Db) -> AccountRead:
    """Change the account's own settings: the language its pages, messages and SMS use."""
    async with db.begin() as session:
        account = await accounts_service.do_set_locale(session, principal.account_id, body.locale)
        result = _account_read(account)
    return result
