"""Health, readiness and Prometheus metrics."""
from __future__ import annotations

import time

import structlog
from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from guahao.core import metrics as core_metrics
from guahao.core.deps import ClockDep, Db
from guahao.core.errors import GuahaoError
from guahao.migrations_api import schema_state
from guahao.outbox import service as outbox
from guahao.payments import reports as payment_reports

router = APIRouter(tags=["operations"])
log = structlog.get_logger("guahao.ops")


class NotReady(GuahaoError):
    code, status = "not_ready", 503
    zh = "服务尚未就绪:{reason}"
    en = "The service is not ready: {reason}"


@router.get("/api", include_in_schema=False)
async def root(request: Request) -> dict:
    """Where the API starts (`/` is the patients' home page). The docs are named only where
    they are served (not in production unless enabled)."""
    links = {"service": "guahao", "api": "/api/v1", "health": "/healthz", "pages": "/"}
    if request.app.state.settings.docs_enabled:
        links |= {"docs": "/docs", "openapi": "/openapi.json"}
    return links


@router.get("/healthz")
async def healthz() -> dict:
    """Liveness: the process answers (no dependency is checked)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request, db: Db, clock: ClockDep) -> dict:
    """Readiness: the database answers and its schema is the one this process expects, or a newer
    release's (expand migrations keep the previous version working during a deploy); says whether
    maintenance mode is on."""
    try:
        async with db.read() as session:
            await session.execute(text("SELECT 1"))
            schema = await schema_state(session)
    except Exception as exc:  # the database being down is exactly what this reports
        raise NotReady(reason=type(exc).__name__) from exc
    if schema == "behind":
        raise NotReady(reason="migrations not at head")
    # ready either way: in maintenance the process still serves staff, callbacks and jobs,
    # so a load balancer must keep sending it traffic (patients get the maintenance answer)
    state = await request.app.state.maintenance.current(clock.now(), time.monotonic())
    return {"status": "ready", "maintenance": state is not None, "schema": schema}


@router.get("/metrics", include_in_schema=False)  # Prometheus text format; docs/OPERATIONS.md
async def metrics(db: Db, clock: ClockDep) -> Response:
    """Every worker's counters (multiprocess mode under `serve`), plus gauges read from the
    database now, so that they are right whichever process answers."""
    return Response(core_metrics.render(await _database_gauges(db, clock.now())), media_type=core_metrics.CONTENT_TYPE)


async def _database_gauges(db, now) -> list:
    try:
        async with db.read() as session:
            oldest = await outbox.oldest_due(session, now=now)
            pending = await payment_reports.pending_refunds(session)
    except Exception as exc:  # a scrape must answer while the database is down: that is when it matters
        log.warning("metrics_database_unavailable", error=type(exc).__name__)
        return [core_metrics.gauge("guahao_metrics_database_up", "1 when the scrape could read the database", 0)]
    lag = max(0.0, (now - oldest).total_seconds()) if oldest else 0.0
    return [core_metrics.gauge(core_metrics.OUTBOX_LAG, "Age of the oldest due outbox message still pending", lag),
            core_metrics.gauge(core_metrics.REFUNDS_PENDING, "Refunds opened and not yet finished", pending),
            core_metrics.gauge("guahao_metrics_database_up", "1 when the scrape could read the database", 1)]
