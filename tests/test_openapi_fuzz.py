"""Input errors (issue 12): schemathesis generates requests from our OpenAPI document for every
operation, on both databases, as a patient with a session; no answer may be a 5xx or break
the schema the document declares for it. The example count is bounded so CI stays fast
(GUAHAO_FUZZ_EXAMPLES raises it for a deeper local run).

schemathesis' pytest integration does not run under pytest 9 yet, so the operations are
walked here, each with its own Hypothesis run."""
from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as fuzz_settings

from guahao.app import create_app
from tests.builders import make_account

EXAMPLES = int(os.environ.get("GUAHAO_FUZZ_EXAMPLES", "8"))
CHECKS = [schemathesis.checks.not_a_server_error, schemathesis.checks.response_schema_conformance,
          schemathesis.checks.content_type_conformance]


@pytest.fixture
async def token(app, clock) -> str:
    _account, token = await make_account(app.state.db, clock.now())
    return token


def test_no_input_gets_a_server_error_or_breaks_the_schema(settings, clock, token):
    # an app of its own, driven synchronously by schemathesis from its own event loop
    fuzz_app = create_app(settings.model_copy(update={"run_jobs_in_process": False}), clock=clock)
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @fuzz_settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # schemathesis' FailureGroup; one report per operation
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert operations > 50
    assert not failures, "\n\n".join(failures)


def test_the_document_declares_sessions_keys_and_problems(app):
    document = app.openapi()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    hold = document["paths"]["/api/v1/bookings"]["post"]
    assert hold["security"] == [{"bearer": []}]
    [key] = [p for p in hold["parameters"] if p["name"].lower() == "idempotency-key"]
    assert key["required"] is True
    assert "security" not in document["paths"]["/api/v1/hospitals"]["get"]  # public
    assert document["paths"]["/api/v1/staff/maintenance"]["put"]["security"] == [{"bearer": []}]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if status == "default" or status[0] in "45":
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, status)


def test_every_operation_says_what_it_does(app):
    """A description on every operation (the route's docstring): the document is the API's manual."""
    document = app.openapi()
    bare = [f"{m.upper()} {p}" for p, ops in document["paths"].items() for m, op in ops.items()
            if not op.get("description", "").strip()]
    assert bare == []
