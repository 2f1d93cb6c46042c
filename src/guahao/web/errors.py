"""Errors on pages are pages: a 404 or 500 (or a refused form) in the same look, never a
stack trace or raw JSON. The API keeps its problem+json answers: the handlers installed by
core.errors stay in charge of every API path, and answer for pages only through this wrapper.
"""
from __future__ import annotations

from urllib.parse import quote

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from guahao.core.errors import (
    DATABASE_RETRY_AFTER,
    DatabaseUnavailable,
    GuahaoError,
    InvalidRequest,
    NotFound,
    database_unavailable,
)
from guahao.web.pages import LoginRequired, page_for, render

log = structlog.get_logger("guahao.web")

NOT_PAGES = ("/api/", "/docs", "/openapi.json", "/static/swagger", "/healthz", "/readyz", "/metrics")


def is_page(request: Request) -> bool:
    """A page route's error is a page; an unknown path gets a page when a browser asks for
    HTML (Accept), and problem+json otherwise; API paths always get problem+json."""
    if request.url.path.startswith(NOT_PAGES):
        return False
    route = request.scope.get("route")
    endpoint = getattr(route, "endpoint", None)
    if endpoint is not None:
        return getattr(endpoint, "__module__", "").startswith("guahao.web")
    return "text/html" in request.headers.get("accept", "")


def error_page(request: Request, status: int, message: str):
    page = page_for(request)
    if request.url.path.startswith("/staff/"):  # the back office's errors keep its own look
        return render(page, "staff/error.html", status=status, status_code=status, message=message, nav=[])
    return render(page, "error.html", status=status, status_code=status, message=message)


def install(app: FastAPI) -> None:
    """Wrap the app's error handlers (call after core.errors.install_error_handlers)."""
    handlers = dict(app.exception_handlers)

    def wrap(exc_class, to_page):
        original = handlers[exc_class]

        async def handler(request: Request, exc: Exception):
            if is_page(request):
                return to_page(request, exc)
            return await original(request, exc)

        app.add_exception_handler(exc_class, handler)

    def domain(request: Request, exc: GuahaoError):
        page = page_for(request)
        return error_page(request, exc.status, exc.message(page.locale))

    def validation(request: Request, exc: RequestValidationError):
        return error_page(request, 422, InvalidRequest().message(page_for(request).locale))

    def http(request: Request, exc: StarletteHTTPException):
        locale = page_for(request).locale
        if exc.status_code == 404:
            return error_page(request, 404, NotFound("page").message(locale))
        if exc.status_code == 405:
            return error_page(request, 405, page_for(request)._("This page cannot be used that way."))
        return error_page(request, exc.status_code, page_for(request)._("The request could not be completed."))

    def unexpected(request: Request, exc: Exception):
        if database_unavailable(exc):
            response = domain(request, DatabaseUnavailable())
            response.headers["Retry-After"] = DATABASE_RETRY_AFTER
            return response
        log.exception("page_error", error_type=type(exc).__name__, path=request.url.path)
        message = page_for(request)._("Something went wrong on our side; please try again shortly.")
        return error_page(request, 500, message)

    wrap(GuahaoError, domain)
    wrap(RequestValidationError, validation)
    wrap(StarletteHTTPException, http)
    wrap(Exception, unexpected)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        login = "/staff/login" if exc.next_url.startswith("/staff/") else "/login"
        return RedirectResponse(f"{login}?next={quote(exc.next_url, safe='')}", status_code=303)
