"""Health, readiness and Prometheus metrics."""
from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from guahao.core.deps import Db
from guahao.core.errors import GuahaoError
from guahao.migrations_api import current_revision_matches_head

router = APIRouter(tags=["operations"])


class NotReady(GuahaoError):
    code, status = "not_ready", 503
    zh = "服务尚未就绪:{reason}"
    en = "The service is not ready: {reason}"


@router.get("/", include_in_schema=False)
async def root() -> dict:
    """Patient and staff pages arrive with the web issue; until then the API is the product."""
    return {"service": "guahao", "docs": "/docs", "openapi": "/openapi.json", "health": "/healthz"}


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(db: Db) -> dict:
    try:
        async with db.read() as session:
            await session.execute(text("SELECT 1"))
            at_head = await current_revision_matches_head(session)
    except Exception as exc:  # the database being down is exactly what this reports
        raise NotReady(reason=type(exc).__name__) from exc
    if not at_head:
        raise NotReady(reason="migrations not at head")
    return {"status": "ready"}


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
