"""The load generator: N prepared HTTP/1.1 requests through K keep-alive connections.

It shares the CPU with the servers and the database (2 cores here), so it must cost as
little as possible per request. httpx spends several hundred microseconds of Python per
request; this client writes prepared bytes and reads one response by Content-Length (or
chunks) on asyncio streams, which is a few tens of microseconds. It is not a general HTTP
client: one request in flight per connection, no redirects, no TLS.

Closed loop: at T0 every connection sends its first request, and each sends the next
unanswered request as soon as its previous answer arrives, until all N are answered.
"""
from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(slots=True)
class Answer:
    index: int
    status: int  # 0 = transport error (no HTTP answer)
    body: bytes
    sent: float  # perf_counter when the request was written
    done: float  # perf_counter when the whole answer was read
    error: str | None = None

    @property
    def code(self) -> str | None:
        """The problem code of a refusal (`slot_sold_out`, ...), None for a success."""
        if self.status < 400 or not self.body:
            return None
        try:
            return json.loads(self.body).get("code")
        except (ValueError, AttributeError):
            return None

    def json(self) -> dict:
        return json.loads(self.body)


def build_request(method: str, host: str, path: str, *, body: dict | None = None,
                  headers: dict[str, str] | None = None) -> bytes:
    payload = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", "User-Agent: guahao-bench", "Accept: */*"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.head = b""  # the raw header block of the last answer (for Retry-After and the like)

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def roundtrip(self, request: bytes) -> tuple[int, bytes]:
        if self._writer is None:
            await self.connect()
        reader, writer = self._reader, self._writer
        writer.write(request)
        head = self.head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        body = await self._read_chunked() if chunked else await reader.readexactly(length)
        if close:
            self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self._reader.readuntil(b"\r\n")
                return b"".join(parts)
            parts.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)


@dataclass
class Run:
    """What one rush produced: the answers (in request order) and T0 on the perf_counter."""

    answers: list[Answer]
    t0: float
    warmup_statuses: dict[int, int] = field(default_factory=dict)


async def _wait_until_wall(instant: float) -> None:
    """Sleep until time.time() >= instant (the release instant is a wall-clock time)."""
    while True:
        left = instant - time.time()
        if left <= 0:
            return
        await asyncio.sleep(left - 0.002 if left > 0.004 else 0)


async def _warm(conn: Connection, request: bytes) -> int:
    """A warm-up request; a connection the server closed meanwhile (uvicorn drops one idle for
    5 s, and a busy machine can take that long to open hundreds) is opened again, once."""
    try:
        return (await conn.roundtrip(request))[0]
    except (OSError, asyncio.IncompleteReadError):
        conn.close()
        try:
            return (await conn.roundtrip(request))[0]
        except (OSError, asyncio.IncompleteReadError):
            conn.close()
            return 0


async def fire(host: str, port: int, requests: list[bytes], *, connections: int, start_wall: float,
               warmup: list[bytes] = (), warmup_path: str = "/healthz", spread_s: float = 0.0) -> Run:
    """Open `connections` keep-alive connections, warm them, and at `start_wall` (time.time())
    send every request of `requests`; return the answers in request order. With `spread_s`,
    request i is not sent before i/len × spread_s after the start: arrivals spread evenly
    over that time instead of all at once."""
    conns = [Connection(host, port) for _ in range(connections)]
    for start in range(0, connections, 64):  # connect in waves: the listen backlog is finite
        await asyncio.gather(*(c.connect() for c in conns[start:start + 64]))
    ping = build_request("GET", f"{host}:{port}", warmup_path)
    await asyncio.gather(*(_warm(c, ping) for c in conns))
    warm_status: dict[int, int] = {}
    for start in range(0, len(warmup), connections):
        batch = warmup[start:start + connections]
        for status in await asyncio.gather(*(_warm(conns[i], r) for i, r in enumerate(batch))):
            warm_status[status] = warm_status.get(status, 0) + 1

    answers: list[Answer | None] = [None] * len(requests)
    order: Iterator[int] = iter(range(len(requests)))
    go = asyncio.Event()

    async def worker(conn: Connection) -> None:
        await go.wait()
        perf = time.perf_counter
        for i in order:  # a shared iterator: each index is taken by exactly one worker
            if spread_s:
                await asyncio.sleep(max(0.0, t0 + spread_s * i / len(requests) - perf()))
            sent = perf()
            try:
                status, body = await conn.roundtrip(requests[i])
                answers[i] = Answer(i, status, body, sent, perf())
            except Exception as exc:  # recorded, counted, and the connection is renewed
                answers[i] = Answer(i, 0, b"", sent, perf(), error=f"{type(exc).__name__}: {exc}")
                conn.close()

    tasks = [asyncio.create_task(worker(c)) for c in conns]
    await _wait_until_wall(start_wall)
    t0 = time.perf_counter()
    go.set()  # the workers read t0 only after this
    await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    return Run(answers=[a for a in answers if a is not None], t0=t0, warmup_statuses=warm_status)
