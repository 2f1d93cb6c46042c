"""The ASGI application: API, pages, operations endpoints and in-process jobs."""
from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from guahao import __version__
from guahao.config import Settings, get_settings
from guahao.core import crypto
from guahao.core.clock import Clock, SystemClock
from guahao.core.db import create_database
from guahao.core.errors import install_error_handlers
from guahao.core.logging import configure_logging
from guahao.core.middleware import RequestContextMiddleware
from guahao.core.ratelimit import RateLimiter


def create_app(settings: Settings | None = None, *, clock: Clock | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(json=settings.log_json, log_file=settings.log_file)
    crypto.configure(settings.data_key, settings.index_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await app.state.db.dispose()

    app = FastAPI(title="guahao", version=__version__, lifespan=lifespan,
                  description="Online hospital appointment registration (网上预约挂号)")
    app.state.settings = settings
    app.state.db = create_database(settings.database_url, pool_size=settings.db_pool_size)
    app.state.clock = clock or SystemClock()
    app.state.limiter = RateLimiter(settings.redis_url)
    app.state.sms = _sms_provider(settings)
    app.state.face_check = _face_check_provider(settings)
    from guahao.booking.gate import SoldOutGate

    app.state.gate = SoldOutGate(settings.redis_url)
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware)

    from guahao.accounts.router import router as accounts_router
    from guahao.booking.router import router as booking_router
    from guahao.booking.staff_router import router as booking_staff_router
    from guahao.catalog.router import router as catalog_router
    from guahao.ops.router import router as ops_router
    from guahao.patients.router import router as patients_router
    from guahao.scheduling.router import router as scheduling_router
    from guahao.staff.router import router as staff_router

    for router in (ops_router, accounts_router, catalog_router, scheduling_router, patients_router, staff_router,
                   booking_router, booking_staff_router):
        app.include_router(router)
    return app


def _sms_provider(settings: Settings):
    from guahao.accounts import sms

    return sms.RecordingSms() if settings.sms_provider == "recording" else sms.ConsoleSms()


def _face_check_provider(settings: Settings):
    from guahao.patients import face_check

    return face_check.SandboxFaceCheck()
