"""What the service publishes about itself: /docs and the paths settings keep private.

/docs is Swagger UI from files we ship (src/guahao/static/swagger), nothing from a CDN: a
hospital network often has no route to public CDNs, and a page that loads scripts from a
third party on every visit gives that party a say in what runs next to a staff login.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from guahao.core.errors import NotFound, problem
from guahao.core.i18n import negotiate

SWAGGER_DIR = Path(__file__).resolve().parent.parent / "static" / "swagger"
ASSETS = "/static/swagger"


def install_docs(app: FastAPI, *, docs_url: str = "/docs") -> None:
    """Serve Swagger UI at `docs_url`; the app must have an `openapi_url`."""
    assert app.openapi_url is not None
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_DIR), name="swagger-assets")

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js", swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon-32x32.png", oauth2_redirect_url=None,
            # no spec validator badge: it would send our document to validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None})


class UnpublishedPaths:
    """Answers 404 (problem+json, as for any unknown page) for `paths` and everything under
    them, whichever feature registered them: used for /metrics when `expose_metrics` is off.
    A guard in front of the router, because routers are shared between apps and must not be
    edited per app."""

    def __init__(self, app: ASGIApp, *, paths: tuple[str, ...]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(scope["path"] == p or scope["path"].startswith(p + "/")
                                           for p in self.paths):
            request = Request(scope)
            locale = negotiate(request.headers.get("accept-language"))
            await problem(request, 404, NotFound.code, NotFound("page").message(locale))(scope, receive, send)
            return
        await self.app(scope, receive, send)
