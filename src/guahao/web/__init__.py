"""The patient web app (H5): server-rendered pages at `/`, mobile-first, zh-CN first; and
the hospital back office at `/staff/` (desktop-first, package `web.staff`).

`install(app)` mounts the pages, their static files and the page error handlers; call it
after the API's routers and error handlers are in place (guahao.app does).
"""
from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles


def install(app: FastAPI) -> None:
    from guahao.web import (
        account_pages,
        booking_pages,
        catalog_pages,
        draw_pages,
        errors,
        patient_pages,
        visit_card_pages,
        waitlist_pages,
    )
    from guahao.web.pages import STATIC_DIR
    from guahao.web.staff import install as staff_install

    app.mount("/static/web", StaticFiles(directory=STATIC_DIR), name="web-static")
    for module in (catalog_pages, account_pages, booking_pages, patient_pages, visit_card_pages, waitlist_pages,
                   draw_pages):
        app.include_router(module.router)
    staff_install(app)  # the back office at /staff/ (web/staff/)
    errors.install(app)
