"""The hospital back office at `/staff/`: desktop-first pages for hospital staff and the
platform operator, on the patient pages' stack (Jinja2, htmx, the same catalogs and CSRF).

One module per page group, each with an APIRouter under `/staff`: `auth` (login, password,
two-step verification), `window` (the front desk), `reports` (reports, restrictions). Shared
pieces (who is logged in, the role check, the side navigation) are in `base`.
"""
from __future__ import annotations

from fastapi import FastAPI


def install(app: FastAPI) -> None:
    from guahao.web.staff import auth, reports, window

    for module in (auth, window, reports):
        app.include_router(module.router)
    # the admin, scheduler and operator pages (a second page group, wt-staffweb2)
    from guahao.web.staff import admin, catalog_admin, operator, scheduler, suspend

    for module in (admin, catalog_admin, scheduler, suspend, operator):
        app.include_router(module.router)
    from guahao.web.staff import his_pages, reconciliation  # HIS drift, payments 对账

    app.include_router(his_pages.router)
    app.include_router(reconciliation.router)
    from guahao.web.staff import release, waitlist  # each session's 候补 queue; 候补 rules, release modes

    app.include_router(waitlist.router)
    app.include_router(release.router)
