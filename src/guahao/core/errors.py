"""Typed domain errors and their problem+json (RFC 9457) rendering.

Every refusal is a `GuahaoError` subclass with a stable `code`, an HTTP status and a message
template per language. Templates take the error's `params` (str.format); datetimes in params
are shown in the hospital's zone by the caller before raising.
"""
from __future__ import annotations

from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from guahao.core.i18n import request_language

PROBLEM_JSON = "application/problem+json"


class GuahaoError(Exception):
    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    zh: ClassVar[str] = "请求无法完成。"
    en: ClassVar[str] = "The request could not be completed."

    def __init__(self, **params: Any) -> None:
        self.params = params
        super().__init__(f"{self.code} {params}")

    def message(self, locale: str) -> str:
        template = self.en if locale == "en" else self.zh
        try:
            return template.format(**self.params)
        except (KeyError, IndexError):
            return template


class NotFound(GuahaoError):
    code, status = "not_found", 404
    zh = "找不到该{what}。"
    en = "That {what} does not exist."

    NAMES_ZH: ClassVar[dict[str, str]] = {
        "hospital": "医院", "department": "科室", "doctor": "医生", "schedule": "排班",
        "slot": "号源", "patient": "就诊人", "booking": "挂号单", "staff": "员工账号",
        "page": "页面", "template": "排班模板", "account": "账号", "restriction": "限制记录",
        "resource": "资源", "visit_card": "就诊卡", "notice": "公告", "draw": "摇号", "waitlist_entry": "候补记录",
    }

    def __init__(self, what: str = "resource", **params: Any) -> None:
        super().__init__(what=what, **params)

    def message(self, locale: str) -> str:
        what = self.params["what"]
        if locale == "en":
            return self.en.format(what=what.replace("_", " "))
        return self.zh.format(what=self.NAMES_ZH.get(what, "资源"))


class Unauthenticated(GuahaoError):
    code, status = "unauthenticated", 401
    zh = "请先登录。"
    en = "Please log in first."


class Forbidden(GuahaoError):
    code, status = "forbidden", 403
    zh = "您没有权限执行此操作。"
    en = "You are not allowed to do this."


class InvalidRequest(GuahaoError):
    code, status = "invalid_request", 422
    zh = "请求内容有误,请检查后重试。"
    en = "The request is invalid; check the fields and try again."


class Conflict(GuahaoError):
    code, status = "conflict", 409
    zh = "数据已被修改,请刷新后重试。"
    en = "The data changed meanwhile; reload and try again."


class RateLimited(GuahaoError):
    code, status = "rate_limited", 429
    zh = "操作过于频繁,请{retry_after}秒后再试。"
    en = "Too many requests; try again in {retry_after} seconds."


def problem(request: Request, status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"https://guahao.example/problems/{code}",
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        "instance": request.url.path,
        **extra,
    }
    headers = {"Content-Language": _locale(request)}
    if "retry_after" in extra:  # rate limits and lockouts
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _locale(request: Request) -> str:
    """The caller's language (core.i18n.request_language), with the account's saved one when
    authentication already ran for this request (core.deps keeps it on request.state)."""
    return request_language(request.headers, getattr(request.state, "account_locale", None))


_HTTP_CODES = {401: Unauthenticated, 403: Forbidden, 404: NotFound}


class DatabaseUnavailable(GuahaoError):
    """The database cannot be reached (restarting, failing over, connections exhausted)."""
    code, status = "database_unavailable", 503
    zh = "系统繁忙,请稍后重试。本次请求未完成。"
    en = "The service is briefly unavailable; your request was not completed. Please try again shortly."


DATABASE_RETRY_AFTER = "5"


def database_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means "the database could not be reached", as opposed to a bug.

    A restart or failover shows up as a refused or dropped connection (ConnectionError, asyncpg's
    connection errors), a connection SQLAlchemy found dead (DBAPIError.connection_invalidated),
    an OperationalError/InterfaceError, a statement or pool checkout that timed out. The patient
    gets a 503 with Retry-After for these, never a 500. Nothing was acknowledged; should a
    hold's commit have landed just before the connection broke, a retry with the same
    Idempotency-Key gets the stored answer (I7), so retrying is always safe."""
    from sqlalchemy import exc as sa_exc

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError,
                        ConnectionError, TimeoutError)):
        return True
    kinds: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)
    try:
        import asyncpg

        # a deadlock or serialization failure aborted the transaction: nothing was committed,
        # and a retry with the same Idempotency-Key is safe (I7), so it is a 503 "retry" too
        kinds += (asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError, asyncpg.InterfaceError,
                  asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
    except ImportError:  # SQLite-only installs
        pass
    if isinstance(exc, kinds):  # the driver's own error, unwrapped (a connection closed under us)
        return True
    seen: BaseException | None = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    for _ in range(4):  # the driver's error is wrapped by the adapter, then by SQLAlchemy
        if seen is None:
            return False
        if isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(GuahaoError)
    async def _domain(request: Request, exc: GuahaoError):
        locale = _locale(request)
        extra = {k: v for k, v in exc.params.items() if isinstance(v, (str, int, float, bool, list))}
        return problem(request, exc.status, exc.code, exc.message(locale), **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        locale = _locale(request)
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "type": e.get("type"), "msg": e.get("msg")}
            for e in exc.errors()
        ]
        return problem(request, 422, "invalid_request", InvalidRequest().message(locale), errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        locale = _locale(request)
        cls = _HTTP_CODES.get(exc.status_code)
        if cls is NotFound:
            err: GuahaoError = NotFound("page")
        elif cls is not None:
            err = cls()
        else:
            return problem(request, exc.status_code, "http_error", str(exc.detail))
        return problem(request, err.status, err.code, err.message(locale))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        import structlog

        locale = _locale(request)
        if database_unavailable(exc):
            structlog.get_logger("guahao.errors").warning("database_unavailable", error_type=type(exc).__name__)
            response = problem(request, 503, DatabaseUnavailable.code, DatabaseUnavailable().message(locale))
            response.headers["Retry-After"] = DATABASE_RETRY_AFTER
            return response
        structlog.get_logger("guahao.errors").exception("unhandled_error", error_type=type(exc).__name__)
        detail = "服务暂时不可用,请稍后重试。" if locale != "en" else "Something went wrong on our side; please retry shortly."
        return problem(request, 500, "internal_error", detail)
