"""The patient web app (H5): server-rendered pages at `/`, mobile-first, zh-CN first.

`install(app)` mounts the pages, their static files and the page error handlers; call it
after the API's routers and error handlers are in place (guahao.app does).
"""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI) -> None:
    from guahao.web import account_pages, booking_pages, catalog_pages, errors, patient_pages, visit_card_pages
    from guahao.web.pages import STATIC_DIR

    app.mount("/static/web", StaticFiles(directory=STATIC_DIR), name="web-static")
    for module in (catalog_pages, account_pages, booking_pages, patient_pages, visit_card_pages):
        app.include_router(module.router)
    errors.install(app)
