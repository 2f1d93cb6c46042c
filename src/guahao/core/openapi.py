"""The OpenAPI document as clients need it: every refusal is problem+json (RFC 9457).

FastAPI documents its own 422 as application/json and nothing for the other refusals, while
every error guahao sends is `application/problem+json` with a stable `code`
(core/errors.py). This pass rewrites the generated document once, when it is first asked for:
each operation gets the Problem schema for its declared 4xx/5xx answers and as its `default`
answer, so a client generator (and the schemathesis run in tests/test_openapi_fuzz.py) knows
the shape and media type of every refusal; and the bearer session scheme is declared."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from guahao.core.errors import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "stable machine-readable reason, e.g. slot_sold_out"},
        "detail": {"type": "string", "description": "the reason in the caller's language (zh-CN or en)"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,  # refusal-specific fields (release_at, retry_after, errors ...)
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def _problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}}}


def _secured(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of the operations that need a session: their dependency tree reaches
    one of the session dependencies of core/deps.py."""
    from fastapi.routing import APIRoute

    from guahao.core import deps

    session_deps = {deps.current_account, deps.current_account_with_key, deps.current_staff}

    def needs(dependant) -> bool:
        return any(d.call in session_deps or needs(d) for d in dependant.dependencies)

    try:  # FastAPI wraps included routers; this walks them with their full paths
        from fastapi.routing import iter_route_contexts

        entries = [(c.path, c.original_route) for c in iter_route_contexts(app.routes)]
    except ImportError:  # older FastAPI: the routes are flat
        entries = [(getattr(r, "path", ""), r) for r in app.routes]
    return {(method.lower(), path) for path, route in entries if isinstance(route, APIRoute)
            and needs(route.dependant) for method in route.methods}


def rewrite(document: dict[str, Any], secured: set[tuple[str, str]] | None = None) -> dict[str, Any]:
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["schemas"].pop("HTTPValidationError", None)
    components["schemas"].pop("ValidationError", None)
    components.setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer",
        "description": "a patient's or staff member's session token (POST /api/v1/auth/login, "
                       "POST /api/v1/staff/auth/login); pages use the same token in a cookie"}
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if secured is not None and (method, path) in secured:
                operation["security"] = [{"bearer": []}]
            for parameter in operation.get("parameters", []):
                # the hold refuses a request without one (core/deps.py current_account_with_key
                # answers idempotency_key_required): say so, though the header parses as optional
                if parameter.get("in") == "header" and parameter.get("name", "").lower() == "idempotency-key":
                    parameter["required"] = True
            responses = operation["responses"]
            for status, answer in responses.items():
                if status[0] in "45":
                    responses[status] = _problem_response(answer.get("description") or "refused")
            responses.setdefault("default", _problem_response(
                "refused: problem+json with a stable `code` (401 without a session, 404 for an object "
                "that is not yours, 409/422 for rule and input refusals, 429 rate limits, 503 when a "
                "dependency is down)"))
    return document


def install(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = rewrite(generate(), _secured(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
