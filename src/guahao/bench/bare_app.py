"""The reference: a bare FastAPI endpoint that does only the conditional claim.

Part of the bench, never of the product. It parses the same JSON body as guahao's hold
(pydantic), runs one statement through the driver and answers 201 or 409 `slot_sold_out`:
no auth, no idempotency, no rules, no ORM.

For `guahao bench browse` it also answers the polled GETs (a doctor's and a department's
availability, the doctor's HTML page) with bytes it holds in memory: the answers guahao gave
before the release, read once at start from GUAHAO_BENCH_PAGES ({path: [content type, body]}). guahao's decisions per second are compared with
it in the same run, under the same load (`guahao bench rush`).

    GUAHAO_BENCH_DSN=postgresql://postgres@127.0.0.1/db  (asyncpg pool) or a SQLite file path
    GUAHAO_BENCH_POOL_SIZE=5                               (connections per worker process)
    GUAHAO_BENCH_PAGES=/tmp/pages.json                     (optional: the browse storm's answers)
    python -m uvicorn guahao.bench.bare_app:app --workers 2
"""
from __future__ import annotations

import asyncio
import json
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS bench_seat (id integer PRIMARY KEY, capacity integer NOT NULL, "
                "taken integer NOT NULL DEFAULT 0)")
CLAIM_PG = "UPDATE bench_seat SET taken = taken + 1 WHERE id = $1 AND taken < capacity RETURNING taken"
CLAIM_SQLITE = "UPDATE bench_seat SET taken = taken + 1 WHERE id = ? AND taken < capacity RETURNING taken"


class ClaimBody(BaseModel):
    slot_id: int = Field(gt=0)
    patient_id: int = Field(gt=0)


class PgClaimer:
    def __init__(self, dsn: str, pool_size: int) -> None:
        self.dsn, self.pool_size, self.pool = dsn, pool_size, None

    async def open(self) -> None:
        import asyncpg

        self.pool = await asyncpg.create_pool(self.dsn, min_size=self.pool_size, max_size=self.pool_size)

    async def claim(self, seat_id: int) -> int | None:
        return await self.pool.fetchval(CLAIM_PG, seat_id)

    async def close(self) -> None:
        await self.pool.close()


class SqliteClaimer:
    """One writer connection (SQLite has one writer anyway), the product's pragmas."""

    def __init__(self, path: str) -> None:
        self.path, self.conn, self.lock = path, None, asyncio.Lock()

    async def open(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=NORMAL"):
            await self.conn.execute(f"PRAGMA {pragma}")

    async def claim(self, seat_id: int) -> int | None:
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                row = await (await self.conn.execute(CLAIM_SQLITE, (seat_id,))).fetchone()
                await self.conn.execute("COMMIT")
            except BaseException:
                await self.conn.execute("ROLLBACK")
                raise
        return None if row is None else row[0]

    async def close(self) -> None:
        await self.conn.close()


def _claimer():
    dsn = os.environ.get("GUAHAO_BENCH_DSN", "")
    if dsn.startswith(("postgresql://", "postgres://")):
        return PgClaimer(dsn, int(os.environ.get("GUAHAO_BENCH_POOL_SIZE", "5")))
    if dsn:
        return SqliteClaimer(dsn)
    if os.environ.get("GUAHAO_BENCH_PAGES"):
        return None  # only the browse pages
    raise RuntimeError("set GUAHAO_BENCH_DSN to a postgresql:// DSN or a SQLite file path")


def _pages() -> dict[str, tuple[str, bytes]]:
    path = os.environ.get("GUAHAO_BENCH_PAGES")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        return {k: (kind, body.encode()) for k, (kind, body) in json.load(f).items()}


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.claimer = _claimer()
    app.state.pages = _pages()
    if app.state.claimer is not None:
        await app.state.claimer.open()
    try:
        yield
    finally:
        if app.state.claimer is not None:
            await app.state.claimer.close()


app = FastAPI(title="guahao bench: bare claim endpoint", lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


@app.post("/claim", status_code=201)
async def claim(body: ClaimBody):
    taken = await app.state.claimer.claim(body.slot_id)
    if taken is None:
        return JSONResponse({"code": "slot_sold_out"}, status_code=409)
    return {"slot_id": body.slot_id, "visit_no": taken}


async def _page(request: Request) -> Response:
    """A polled page from memory (the path without its query string picks it)."""
    hit = app.state.pages.get(request.url.path)
    if hit is None:
        return JSONResponse({"code": "not_found"}, status_code=404)
    return Response(hit[1], media_type=hit[0])


app.add_api_route("/api/v1/doctors/{doctor_id}/availability", _page, methods=["GET"])
app.add_api_route("/api/v1/departments/{department_id}/availability", _page, methods=["GET"])
app.add_api_route("/doctors/{doctor_id}", _page, methods=["GET"])
