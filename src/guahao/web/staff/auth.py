"""The staff member's own pages: login (username + password, then the authenticator code
when two-step verification is on), logout, the home page, change password, and TOTP
enrolment with a QR code of the otpauth URI.

Every step calls the staff feature's functions the JSON routes call (staff/login.py,
staff/service.py, staff/totp.py): the same rate limits, lockout, audit rows and session.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import segno
from fastapi import APIRouter

from guahao.accounts import service as accounts_service
from guahao.accounts.cookies import clear_session_cookie, set_session_cookie
from guahao.catalog import service as catalog_service
from guahao.core.errors import GuahaoError, NotFound
from guahao.staff import login as staff_login
from guahao.staff import service as staff_service
from guahao.staff import totp
from guahao.staff.errors import OtpRequired
from guahao.staff.schemas import OtpCode, PasswordChange
from guahao.web.pages import safe_next
from guahao.web.staff.base import ADMIN, FRONT_DESK, OPERATOR, StaffPageDep, form_of, parse, redirect, render

router = APIRouter(prefix="/staff", include_in_schema=False)
ATTEMPT_LIMIT = "5/minute"  # as the API: each try costs an argon2 hash or guesses a code
# where each role starts its day
HOME_OF = {FRONT_DESK: "/staff/hospitals/{hospital_id}/window", ADMIN: "/staff/hospitals/{hospital_id}/reports"}


def _client(page) -> str:
    return page.request.client.host if page.request.client else "unknown"


def _safe_staff_next(value: str | None) -> str:
    target = safe_next(value, "/staff/")
    return target if target.startswith("/staff/") else "/staff/"


def _login_page(page, *, username: str = "", next_url: str = "/staff/", error: str | None = None,
                otp_step: bool = False, status: int = 200):
    return render(page, "staff/login.html", status=status, username=username, next_url=next_url, error=error,
                  otp_step=otp_step)


@router.get("/login")
async def login_form(page: StaffPageDep, next: str = "/staff/"):
    if page.staff is not None:
        return redirect(page, _safe_staff_next(next))
    return _login_page(page, next_url=_safe_staff_next(next))


@router.post("/login")
async def login(page: StaffPageDep):
    """Username and password; with two-step verification on, the same form comes back asking
    for the code as well (the password is typed again: it is never put into the page)."""
    form = await form_of(page)
    state = page.request.app.state
    username = staff_service.normalize_username(form.get("username", ""))
    next_url = _safe_staff_next(form.get("next"))
    otp = form.get("otp", "").strip() or None
    try:
        await state.limiter.hit(staff_login.LOGIN_LIMIT, "staff-login", username, _client(page))
        done = await staff_login.do_login(state.db, username=username, password=form.get("password", ""), otp=otp,
                                          now=state.clock.now(), policy=staff_login.policy_of(state.settings))
    except OtpRequired as exc:
        return _login_page(page, username=username, next_url=next_url, otp_step=True, status=exc.status,
                           error=exc.message(page.locale))
    except GuahaoError as exc:
        return _login_page(page, username=username, next_url=next_url, otp_step=otp is not None,
                           error=exc.message(page.locale), status=exc.status)
    response = redirect(page, next_url)
    set_session_cookie(response, done.token, settings=state.settings, ttl=staff_service.SESSION_TTL)
    return response


@router.post("/logout")
async def logout(page: StaffPageDep):
    await form_of(page)
    state = page.request.app.state
    if page.staff is not None:
        async with state.db.begin() as session:
            await accounts_service.do_revoke_session(session, page.staff.session_id, now=state.clock.now())
    response = redirect(page, "/staff/login")
    clear_session_cookie(response, settings=state.settings)
    return response


@router.get("/")
async def home(page: StaffPageDep):
    """A hospital role goes to its main page; the operator picks a hospital."""
    staff = page.need()
    start = HOME_OF.get(staff.role)
    if start and staff.hospital_id is not None:
        return redirect(page, start.format(hospital_id=staff.hospital_id))
    hospitals = []
    if staff.is_operator:
        async with page.request.app.state.db.read() as session:
            rows, _ = await catalog_service.list_hospitals(session, limit=200)
        hospitals = [hospital for hospital, _distance in rows]
    return render(page, "staff/home.html", hospitals=hospitals)


# --- password ---------------------------------------------------------------------------------

@router.get("/password")
async def password_form(page: StaffPageDep):
    page.need()
    return render(page, "staff/password.html")


@router.post("/password")
async def change_password(page: StaffPageDep):
    """The API's change: current password checked, other sessions end, audited."""
    staff = page.need()
    form = await form_of(page)
    state = page.request.app.state
    try:
        if form.get("new_password", "") != form.get("repeat_password", ""):
            return render(page, "staff/password.html", status=422,
                          error=page._("The two new passwords differ; type the same one twice."))
        # the service checks the length (WeakPassword says how long); the schema's bound is the API's
        body = PasswordChange.model_construct(current_password=form.get("current_password", "")[:256],
                                              new_password=form.get("new_password", "")[:256])
        await state.limiter.hit(ATTEMPT_LIMIT, "staff-password", str(staff.staff_id), _client(page))
        async with state.db.read() as session:
            user = await _user(session, staff.staff_id)
        password_hash = await staff_service.new_password_hash(user, current_password=body.current_password,
                                                              new_password=body.new_password)
        async with state.db.begin() as session:
            await staff_service.do_set_password(session, staff.staff_id, password_hash, now=state.clock.now(),
                                                keep_session_id=staff.session_id)
    except GuahaoError as exc:
        return render(page, "staff/password.html", status=exc.status, error=exc.message(page.locale))
    return render(page, "staff/password.html", done=True)


async def _user(session, staff_id: int):
    user = await staff_service.get(session, staff_id)
    if user is None:
        raise NotFound("staff")
    return user


# --- two-step verification (TOTP) ---------------------------------------------------------------

def _qr_of(uri: str) -> tuple[str, str]:
    """(QR image as a data URI, the secret for typing in by hand) of an otpauth:// URI."""
    secret = parse_qs(urlsplit(uri).query).get("secret", [""])[0]
    return segno.make_qr(uri, error="m").svg_data_uri(scale=5, border=2), secret


async def _totp_page(page, *, status: int = 200, **values):
    state = page.request.app.state
    async with state.db.read() as session:
        enabled = await totp.is_enabled(session, page.staff.staff_id)
    return render(page, "staff/totp.html", status=status, enabled=enabled, **values)


@router.get("/totp")
async def totp_status(page: StaffPageDep):
    page.need(ADMIN, OPERATOR)
    return await _totp_page(page)


@router.post("/totp/enroll")
async def totp_enroll(page: StaffPageDep):
    """A new secret, shown once on this answer (never cached), as a QR code and as text."""
    staff = page.need(ADMIN, OPERATOR)
    await form_of(page)
    state = page.request.app.state
    try:
        async with state.db.begin() as session:
            uri = await totp.do_enroll(session, await _user(session, staff.staff_id), now=state.clock.now())
    except GuahaoError as exc:
        return await _totp_page(page, status=exc.status, error=exc.message(page.locale))
    qr, secret = _qr_of(uri)
    return await _totp_page(page, qr=qr, secret=secret)


@router.post("/totp/confirm")
async def totp_confirm(page: StaffPageDep):
    return await _totp_change(page, totp.do_confirm, page._("Two-step verification is on."))


@router.post("/totp/disable")
async def totp_disable(page: StaffPageDep):
    return await _totp_change(page, totp.do_disable, page._("Two-step verification is off."))


async def _totp_change(page, action, done: str):
    staff = page.need(ADMIN, OPERATOR)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(OtpCode, {"code": form.get("code", "").strip()})
        await state.limiter.hit(ATTEMPT_LIMIT, "staff-totp", str(staff.staff_id), _client(page))
        async with state.db.begin() as session:
            await action(session, await _user(session, staff.staff_id), body.code, now=state.clock.now())
    except GuahaoError as exc:
        return await _totp_page(page, status=exc.status, error=exc.message(page.locale))
    return await _totp_page(page, notice=done)

