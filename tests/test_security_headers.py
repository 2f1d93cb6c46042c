"""Security headers (core/security_headers.py) on every kind of answer.

The browser tests (test_web_browser.py) fail on any content-security-policy report in
Chromium, so the policy is also proven not to block what the pages ship."""
from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from guahao.core.security_headers import SecurityHeadersMiddleware


def _policy(response: httpx.Response) -> dict[str, str]:
    text = response.headers["content-security-policy"]
    return dict(part.strip().split(" ", 1) for part in text.split(";"))


@pytest.mark.parametrize("path", ["/login", "/api/v1/hospitals", "/api/v1/no-such-thing", "/no-such-page",
                                  "/static/web/web.js", "/healthz"])
async def test_every_answer_carries_the_headers(client, path):
    response = await client.get(path, headers={"accept": "text/html"})
    assert response.status_code < 500
    policy = _policy(response)
    assert policy["script-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert policy["object-src"] == "'none'"
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "camera=(self)" in response.headers["permissions-policy"]
    # a development/test service is plain HTTP: no HSTS promise
    assert "strict-transport-security" not in response.headers


async def test_only_the_api_docs_page_may_run_its_inline_script(client):
    response = await client.get("/docs")
    assert response.status_code == 200
    assert _policy(response)["script-src"] == "'self' 'unsafe-inline'"
    assert _policy(response)["frame-ancestors"] == "'none'"


def _tiny_app(*, https: bool, header: tuple[str, str] | None = None) -> httpx.AsyncClient:
    async def hello(request):
        response = PlainTextResponse("hi")
        if header:
            response.headers[header[0]] = header[1]
        return response

    app = SecurityHeadersMiddleware(Starlette(routes=[Route("/", hello)]), https=https)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


async def test_https_deployments_promise_https_and_a_handler_may_set_its_own_value():
    async with _tiny_app(https=True, header=("Referrer-Policy", "no-referrer")) as tiny:
        response = await tiny.get("/")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers.get_list("referrer-policy") == ["no-referrer"]
    assert response.headers["x-content-type-options"] == "nosniff"
