"""The ASGI application: API, pages, operations endpoints and in-process jobs."""
from __future__ import annotations

from contextlib import asynccontextmanager
from types import SimpleNamespace

from fastapi import FastAPI

from guahao import __version__
from guahao.accounts import service as accounts_service
from guahao.accounts.router import router as accounts_router
from guahao.booking.budget import HoldBudgetMiddleware
from guahao.booking.fast_path import SoldOutFastPath
from guahao.booking.gate import SoldOutGate
from guahao.booking.router import router as booking_router
from guahao.booking.staff_router import router as booking_staff_router
from guahao.booking.window_router import router as booking_window_router
from guahao.catalog.notice_router import router as catalog_notice_router
from guahao.catalog.router import router as catalog_router
from guahao.catalog.staff_router import router as catalog_staff_router
from guahao.config import Settings, get_settings
from guahao.core import crypto, signing
from guahao.core.admission import AdmissionMiddleware, parse_limits
from guahao.core.clock import Clock, SystemClock
from guahao.core.db import create_database
from guahao.core.docs import UnpublishedPaths, install_docs
from guahao.core.errors import install_error_handlers
from guahao.core.logging import configure_logging
from guahao.core.maintenance import MaintenanceMiddleware
from guahao.core.middleware import RequestContextMiddleware
from guahao.core.openapi import install as install_openapi
from guahao.core.proxies import TrustedProxyMiddleware
from guahao.core.ratelimit import RateLimiter
from guahao.core.security_headers import SecurityHeadersMiddleware
from guahao.draw.fast_entry import ENTRY_PATH as DRAW_ENTRY_PATH
from guahao.draw.fast_entry import DrawEntryFastPath
from guahao.draw.router import router as draw_router
from guahao.draw.staff_router import router as draw_staff_router
from guahao.fhir.router import router as fhir_router
from guahao.his.admin_router import router as his_admin_router
from guahao.his.drift_router import router as his_drift_router
from guahao.jobs.router import router as jobs_router
from guahao.ops.reports_router import router as reports_router
from guahao.ops.router import router as ops_router
from guahao.patients.router import router as patients_router
from guahao.payments.router import router as payments_router
from guahao.payments.staff_router import router as payments_staff_router
from guahao.providers import build_providers
from guahao.scheduling import availability
from guahao.scheduling.fast_answers import CachedAvailability
from guahao.scheduling.router import router as scheduling_router
from guahao.staff import service as staff_service
from guahao.staff.account_router import router as staff_account_router
from guahao.staff.maintenance import Switch as MaintenanceSwitch
from guahao.staff.maintenance_router import router as maintenance_router
from guahao.staff.router import router as staff_router
from guahao.staff.rules_router import router as staff_rules_router
from guahao.waitlist.router import router as waitlist_router
from guahao.waitlist.router import staff_router as waitlist_staff_router
from guahao.web import install as install_web

# Routes match in this order; the booking routes take the release rush, so they come first.
# Each feature's staff routes are its `staff_router`, mounted here next to its public router.
ROUTERS = (booking_router, ops_router, accounts_router, catalog_router, catalog_staff_router, scheduling_router,
           patients_router, staff_router, staff_account_router, staff_rules_router, booking_window_router,
           booking_staff_router, payments_router, payments_staff_router, reports_router, jobs_router,
           his_admin_router, his_drift_router, maintenance_router, catalog_notice_router, waitlist_router,
           waitlist_staff_router, draw_router, draw_staff_router, fhir_router)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(json=settings.log_json, log_file=settings.log_file)
    crypto.configure_from(settings)
    signing.configure(settings.secret_key)
    availability.forget_cached()  # a new app (a test's, a reload) starts without cached answers

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = None
        if settings.run_jobs_in_process:
            # the embedded default drains the outbox in this process; production runs
            # `guahao worker` processes instead (GUAHAO_RUN_JOBS_IN_PROCESS=false)
            from guahao.jobs.runner import start_background

            worker = await start_background(app.state.db, app.state.clock, settings, app.state.providers)
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await app.state.db.dispose()

    # FastAPI's own OpenTelemetry hooks are off: metrics go through prometheus-client
    # (/metrics), and the per-request provider lookup cost ~5 % of a sold-out answer.
    # The API description and /docs are public outside production only, unless the settings
    # say otherwise (expose_docs); ReDoc is off (it would load from a CDN).
    app = FastAPI(title="guahao", version=__version__, lifespan=lifespan,
                  description="Online hospital appointment registration (网上预约挂号)",
                  openapi_url="/openapi.json" if settings.docs_enabled else None, docs_url=None, redoc_url=None,
                  telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.db = create_database(settings.database_url, pool_size=settings.db_pool_size,
                                   statement_timeout=settings.db_statement_timeout_seconds)
    app.state.clock = clock or SystemClock()
    app.state.limiter = RateLimiter(settings.redis_url)
    app.state.providers = build_providers(settings)
    # core.deps.Authenticator: who a session token belongs to, answered by accounts and staff
    app.state.authenticator = SimpleNamespace(resolve_token=accounts_service.resolve_token,
                                              resolve_staff=staff_service.resolve_principal)
    app.state.sms = app.state.providers["sms"]
    app.state.face_check = app.state.providers["face_check"]
    app.state.gate = SoldOutGate(settings.redis_url)
    install_error_handlers(app)
    if not settings.metrics_enabled:
        app.add_middleware(UnpublishedPaths, paths=("/metrics",))
    # innermost: the sold-out answers of a rush, after every rule in front of the route
    app.add_middleware(SoldOutFastPath)
    app.add_middleware(DrawEntryFastPath)  # a draw's entries at its release instant, the same way
    app.add_middleware(CachedAvailability)  # and the polls of availability answers already made
    app.state.maintenance = MaintenanceSwitch(app.state.db, file=settings.maintenance_file)
    app.add_middleware(MaintenanceMiddleware, current=app.state.maintenance.current, clock=app.state.clock)
    app.add_middleware(AdmissionMiddleware, limits=parse_limits(settings.admission_limits))
    # outside admission: a bot's refused holds take no admission slot
    app.add_middleware(HoldBudgetMiddleware, also=[("draw-entry", DRAW_ENTRY_PATH)])
    app.add_middleware(SecurityHeadersMiddleware, https=settings.env == "production")
    app.add_middleware(RequestContextMiddleware)
    if settings.trusted_proxies:
        # added last, so it runs first: every later layer sees the patient's address
        app.add_middleware(TrustedProxyMiddleware, trusted_proxies=settings.trusted_proxies)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app)
    if settings.docs_enabled:
        install_docs(app)
    install_web(app)  # the patient pages at /, after the API (its routes and error handlers)
    return app
