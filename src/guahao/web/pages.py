"""What every patient page shares: the Jinja2 environment, the page context (language, elderly
mode, CSRF token, who is logged in), rendering, and the checks a form post goes through.

A page is a thin view (STYLE.md habit 11): it parses the form, calls the same service or
`do_*` action as the JSON API, and renders. Nothing here holds a booking rule.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import jinja2
from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from guahao.core import signing
from guahao.core.deps import AccountPrincipal, bearer_or_cookie
from guahao.core.errors import GuahaoError
from guahao.core.i18n import SUPPORTED, negotiate
from guahao.web import i18n
from guahao.web.format import FILTERS

HERE = Path(__file__).resolve().parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"
LANG_COOKIE = "guahao_lang"
ELDER_COOKIE = "guahao_elder"
CSRF_COOKIE = "guahao_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
PREFERENCE_MAX_AGE = 365 * 24 * 3600

env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True)
env.filters.update(FILTERS)


class CsrfRefused(GuahaoError):
    code, status = "csrf_failed", 403
    zh = "页面已过期或请求来源不明,请返回上一页刷新后重试。"
    en = "This page has expired or the request did not come from it; go back, reload and try again."


class LoginRequired(Exception):
    """A page that needs a logged-in patient: the error handler sends the browser to /login."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def secure_cookies(request: Request) -> bool:
    return request.app.state.settings.env == "production"


def locale_of(request: Request, saved: str | None = None) -> str:
    """This browser's switch (the cookie), then the language saved on the logged-in account
    (chosen on another device), then the browser's Accept-Language. Unlike the API, the
    browser's header ranks below the account: every browser sends one, nobody chooses it."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in SUPPORTED:
        return chosen
    if saved in SUPPORTED:
        return saved
    return negotiate(request.headers.get("accept-language"))


def in_wechat(request: Request) -> bool:
    """WeChat's in-app browser (its user agent says MicroMessenger): it cannot download files,
    so a page offers what needs one (the .ics) with a hint to open the page in a browser."""
    return "MicroMessenger" in request.headers.get("user-agent", "")


def safe_next(value: str | None, default: str = "/") -> str:
    """Only a path on this site (no scheme, no host, no //evil.example) may be a redirect target."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


@dataclass
class Page:
    """The per-request view of the browser: language, elderly mode, CSRF, the account."""

    request: Request
    locale: str
    elder: bool
    csrf_nonce: str
    new_nonce: bool
    account: AccountPrincipal | None = None
    cookies: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    @property
    def csrf_token(self) -> str:
        return signing.csrf_token(self.csrf_nonce)

    def _(self, message: str, **params: Any) -> str:
        return i18n.translate(self.locale, message, **params)

    def need_account(self) -> AccountPrincipal:
        if self.account is None:
            raise LoginRequired(self.request.url.path + (f"?{self.request.url.query}" if self.request.url.query else ""))
        return self.account

    def set_cookie(self, name: str, value: str, **options: Any) -> None:
        self.cookies.append((name, value, options))


def page_for(request: Request, *, account: AccountPrincipal | None = None, saved_locale: str | None = None) -> Page:
    nonce = request.cookies.get(CSRF_COOKIE) or ""
    new = len(nonce) < 20
    if new:
        nonce = secrets.token_urlsafe(24)
    return Page(request=request, locale=locale_of(request, saved_locale),
                elder=request.cookies.get(ELDER_COOKIE) == "1", csrf_nonce=nonce, new_nonce=new, account=account)


async def _resolve(request: Request) -> tuple[AccountPrincipal | None, str | None]:
    """The logged-in account and its saved language (one statement), or (None, None)."""
    token = bearer_or_cookie(request)
    if not token:
        return None, None
    state = request.app.state
    async with state.db.peek() as conn:
        auth = await state.authenticator.resolve_token(conn, token, now=state.clock.now())
    if auth is None or auth.account_id is None:
        return None, None
    return AccountPrincipal(account_id=auth.account_id, session_id=auth.id), getattr(auth, "locale", None)


async def current_page(request: Request) -> Page:
    account, saved = await _resolve(request)
    return page_for(request, account=account, saved_locale=saved)


PageDep = Annotated[Page, Depends(current_page)]


async def form_of(page: Page) -> dict[str, str]:
    """The posted form, after the CSRF check: the token in the form (or the htmx header) must
    be the one made from this browser's CSRF cookie."""
    form = await page.request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    candidate = values.get(CSRF_FIELD) or page.request.headers.get(CSRF_HEADER)
    if page.new_nonce or not signing.csrf_token_valid(page.csrf_nonce, candidate):
        raise CsrfRefused()
    return values


def _apply_cookies(page: Page, response) -> None:
    secure = secure_cookies(page.request)
    if page.new_nonce:
        response.set_cookie(CSRF_COOKIE, page.csrf_nonce, path="/", httponly=True, samesite="lax", secure=secure)
    for name, value, options in page.cookies:
        options = {"path": "/", "samesite": "lax", "secure": secure, **options}
        response.set_cookie(name, value, **options)


def context_of(page: Page) -> dict[str, Any]:
    """What every template may use besides its own values. The per-visitor ones (`page`,
    `csrf_token`, `logged_in`) are replaced in a page shared by all visitors (shared_pages.py)."""
    return {"page": page, "_": page._, "locale": page.locale, "elder": page.elder,
            "csrf_field": CSRF_FIELD, "csrf_token": page.csrf_token, "logged_in": page.account is not None,
            "path": page.request.url.path, "htmx": page.request.headers.get("hx-request") == "true",
            "in_wechat": in_wechat(page.request)}


def render(page: Page, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    return respond(page, env.get_template(template).render({**context_of(page), **values}), status=status)


def respond(page: Page, html: str, *, status: int = 200) -> HTMLResponse:
    """The response for a page's HTML: its headers and this browser's cookies."""
    response = HTMLResponse(html, status_code=status)
    # personal pages must not be kept by shared caches, and the language follows cookie/header
    response.headers["Cache-Control"] = "no-store"
    response.headers["Vary"] = "Cookie, Accept-Language"
    response.headers["Content-Language"] = page.locale
    _apply_cookies(page, response)
    return response


def redirect(page: Page, url: str) -> RedirectResponse:
    """After a successful post: 303 to the result (post/redirect/get). htmx follows it too."""
    response = RedirectResponse(url, status_code=303)
    _apply_cookies(page, response)
    return response
