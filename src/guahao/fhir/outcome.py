"""Refusals as OperationOutcome, with the JSON API's codes and zh-CN / en messages.

Every refusal the facade gives is a `GuahaoError` raised by the same action or view the API
calls; here it becomes an OperationOutcome whose issue carries our stable code (the API's
problem `code`) in `details.coding` and the API's translated message in `details.text`. The
operations ($find, $hold, $book) answer with a Bundle holding only that OperationOutcome (IHE
ITI-116/117: "only an OperationOutcome"); reads, searches and PATCH answer with the
OperationOutcome itself. `FhirRoute` does this for every route of the facade, including the
refusals of dependencies (no session: 401) and of request validation (422).
"""
from __future__ import annotations

from typing import Any

import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from guahao.core.errors import DatabaseUnavailable, GuahaoError, InvalidRequest, database_unavailable
from guahao.core.i18n import request_language

FHIR_JSON = "application/fhir+json"
PROBLEMS = "https://guahao.example/problems"
log = structlog.get_logger("guahao.fhir")

# (severity, code) by our code; the rest by HTTP status below. IHE ITI-116: an unavailable
# $hold is fatal / not-found.
_BY_CODE = {"slot_sold_out": ("fatal", "not-found"), "idempotency_key_required": ("error", "required"),
            "idempotency_key_reused": ("error", "conflict"), "idempotency_key_busy": ("error", "transient")}
_BY_STATUS = {400: ("error", "invalid"), 401: ("error", "login"), 403: ("error", "forbidden"),
              404: ("error", "not-found"), 409: ("error", "business-rule"), 410: ("error", "deleted"),
              412: ("error", "conflict"), 415: ("error", "not-supported"), 422: ("error", "invalid"),
              429: ("error", "throttled"), 500: ("fatal", "exception"), 503: ("error", "transient")}


class InternalError(GuahaoError):
    """A bug: the same answer as the API's internal_error, as an OperationOutcome."""
    code, status = "internal_error", 500
    zh = "服务暂时不可用,请稍后重试。"
    en = "Something went wrong on our side; please retry shortly."


class FhirJSON(JSONResponse):
    media_type = FHIR_JSON


def issue(code: str, status: int, text: str) -> dict[str, Any]:
    """One issue for our refusal `code` (HTTP `status`), with its message `text`."""
    severity, kind = _BY_CODE.get(code) or _BY_STATUS.get(status, ("error", "processing"))
    return {"severity": severity, "code": kind,
            "details": {"coding": [{"system": PROBLEMS, "code": code}], "text": text}}


def issue_for(exc: GuahaoError, locale: str) -> dict[str, Any]:
    return issue(exc.code, exc.status, exc.message(locale))


def operation_outcome(exc: GuahaoError, locale: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [issue_for(exc, locale)]}


def information(text: str, *, diagnostics: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"severity": "information", "code": "informational", "details": {"text": text}}
    if diagnostics:
        found["diagnostics"] = diagnostics
    return {"resourceType": "OperationOutcome", "issue": [found]}


def only_outcome(outcome: dict[str, Any]) -> dict[str, Any]:
    """The operations' refusal: a Bundle with nothing but the OperationOutcome."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": outcome}]}


def locale_of(request: Request) -> str:
    return request_language(request.headers, getattr(request.state, "account_locale", None))


def refusal(request: Request, exc: GuahaoError, *, status: int | None = None) -> FhirJSON:
    outcome = operation_outcome(exc, locale_of(request))
    body = only_outcome(outcome) if "$" in request.url.path else outcome
    headers = {"Content-Language": locale_of(request)}
    if "retry_after" in exc.params:
        headers["Retry-After"] = str(exc.params["retry_after"])
    return FhirJSON(body, status_code=status or exc.status, headers=headers)


class FhirRoute(APIRoute):
    """Every refusal of a facade route, raised anywhere in it (dependencies included), as FHIR."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def fhir_handler(request: Request):
            try:
                return await handler(request)
            except GuahaoError as exc:
                return refusal(request, exc)
            except RequestValidationError as exc:
                log.info("fhir_invalid_request", errors=len(exc.errors()))
                return refusal(request, InvalidRequest())
            except Exception as exc:
                if database_unavailable(exc):
                    response = refusal(request, DatabaseUnavailable())
                    response.headers["Retry-After"] = "5"
                    return response
                log.exception("unhandled_error", error_type=type(exc).__name__)
                return refusal(request, InternalError())

        return fhir_handler
