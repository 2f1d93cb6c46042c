"""Login by mobile number and SMS code (with the PIPL consent), logout, and the two browser
preferences: language and elderly mode (长辈模式). The calls are the accounts API's
(accounts/router.py): the same rate limits, the same service functions, the same cookie."""
from __future__ import annotations

import datetime as dt

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response

from guahao.accounts import service as accounts_service
from guahao.accounts.cookies import clear_session_cookie, set_session_cookie
from guahao.accounts.errors import SmsUnavailable
from guahao.core.crypto import mask_phone
from guahao.core.errors import GuahaoError
from guahao.core.i18n import SUPPORTED
from guahao.web.pages import (
    ELDER_COOKIE,
    LANG_COOKIE,
    PREFERENCE_MAX_AGE,
    PageDep,
    form_of,
    redirect,
    render,
    safe_next,
)

router = APIRouter(include_in_schema=False)
log = structlog.get_logger("guahao.web")

# The texts the patient agrees to; a new version is asked for again and recorded anew.
PRIVACY_VERSION = "2026-12"
ID_NUMBER_VERSION = "2026-12"
RESEND_SECONDS = 60  # the per-number limit lets one code a minute through


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _login_page(page, *, phone: str = "", next_url: str = "/", sent_to: str | None = None,
                error: str | None = None, wait: int = 0, status: int = 200):
    return render(page, "account/login.html", status=status, phone=phone, next_url=next_url, sent_to=sent_to,
                  error=error, wait=wait, privacy_version=PRIVACY_VERSION)


@router.get("/login")
async def login_form(page: PageDep, next: str = "/"):
    if page.account is not None:
        return redirect(page, safe_next(next))
    return _login_page(page, next_url=safe_next(next))


@router.post("/login/code")
async def send_code(page: PageDep):
    """Step 1: send a login code (accounts router's send_sms_code, same limits)."""
    form = await form_of(page)
    request = page.request
    state = request.app.state
    settings = state.settings
    raw_phone, next_url = form.get("phone", "").strip(), safe_next(form.get("next"))
    try:
        phone = accounts_service.normalize_mobile(raw_phone)
        await state.limiter.hit(settings.sms_send_limit_per_client, "sms-client", _client(request))
        await state.limiter.hit(settings.sms_send_limit_per_number, "sms-number", accounts_service.phone_hash(phone))
        ttl = dt.timedelta(seconds=settings.sms_code_ttl_seconds)
        async with state.db.begin() as session:
            code = await accounts_service.do_issue_code(session, phone, now=state.clock.now(), ttl=ttl)
        try:
            await state.sms.send(phone, "login_code", {"code": code})
        except Exception as exc:
            log.warning("sms_send_failed", error_type=type(exc).__name__)
            raise SmsUnavailable() from exc
    except GuahaoError as exc:
        wait = int(exc.params.get("retry_after", 0) or 0)
        return _login_page(page, phone=raw_phone, next_url=next_url, error=exc.message(page.locale), wait=wait,
                           status=exc.status)
    return _login_page(page, phone=raw_phone, next_url=next_url, sent_to=mask_phone(phone), wait=RESEND_SECONDS)


@router.post("/login")
async def login(page: PageDep):
    """Step 2: log in with the code; the consent is required and recorded with its version."""
    form = await form_of(page)
    state = page.request.app.state
    settings = state.settings
    raw_phone, next_url = form.get("phone", "").strip(), safe_next(form.get("next"))
    if form.get("consent") != PRIVACY_VERSION:
        return _login_page(page, phone=raw_phone, next_url=next_url, status=422,
                           error=page._("Please read and agree to the personal information notice first."))
    ttl = dt.timedelta(hours=settings.session_ttl_hours)
    try:
        phone = accounts_service.normalize_mobile(raw_phone)
        now = state.clock.now()
        async with state.db.begin() as session:
            outcome = await accounts_service.do_login(session, phone, form.get("code", "").strip(), now=now,
                                                      max_attempts=settings.sms_code_max_attempts, session_ttl=ttl)
            if isinstance(outcome, accounts_service.LoginResult):
                await accounts_service.do_record_consent(session, outcome.account.id, kind="privacy",
                                                         version=PRIVACY_VERSION, now=now)
                chosen = page.request.cookies.get(LANG_COOKIE)
                if chosen in SUPPORTED and chosen != outcome.account.locale:
                    # switched before logging in: the account keeps that choice
                    await accounts_service.do_set_locale(session, outcome.account.id, chosen)
        if not isinstance(outcome, accounts_service.LoginResult):
            raise outcome  # a wrong try was committed above and counts against the code
    except GuahaoError as exc:
        return _login_page(page, phone=raw_phone, next_url=next_url, error=exc.message(page.locale),
                           status=exc.status)
    log.info("account_login", account_id=outcome.account.id, via="web")
    response = redirect(page, next_url)
    set_session_cookie(response, outcome.token, settings=settings, ttl=ttl)
    return response


@router.post("/logout")
async def logout(page: PageDep):
    await form_of(page)
    state = page.request.app.state
    if page.account is not None:
        async with state.db.begin() as session:
            await accounts_service.do_revoke_session(session, page.account.session_id, now=state.clock.now())
    response = redirect(page, "/")
    clear_session_cookie(response, settings=state.settings)
    return response


@router.get("/me")
async def me(page: PageDep):
    account = page.need_account()
    state = page.request.app.state
    async with state.db.read() as session:
        row = await accounts_service.get(session, account.account_id)
        consents = await accounts_service.consents_of(session, account.account_id)
    return render(page, "account/me.html", phone=mask_phone(row.phone) if row else "", consents=consents)


@router.get("/settings/lang")
async def set_language(page: PageDep, to: str = "zh-CN", next: str = "/") -> Response:
    """The language switch, a plain link (works without JS): kept in this browser's cookie
    and, when logged in, saved on the account (accounts.service.do_set_locale), where other
    devices, API messages without an Accept-Language and the SMS notices find it. A GET that
    writes: the worst a forged link can do is switch someone's language, as it could with
    the cookie alone, so it is not worth a form and a CSRF token on every page's header."""
    if to in SUPPORTED:
        page.set_cookie(LANG_COOKIE, to, max_age=PREFERENCE_MAX_AGE)
        if page.account is not None:
            state = page.request.app.state
            async with state.db.begin() as session:
                await accounts_service.do_set_locale(session, page.account.account_id, to)
    return redirect(page, safe_next(next))


@router.get("/settings/elder")
async def set_elder_mode(page: PageDep, on: int = 1, next: str = "/") -> Response:
    page.set_cookie(ELDER_COOKIE, "1" if on else "0", max_age=PREFERENCE_MAX_AGE)
    return redirect(page, safe_next(next))
