"""A TCP fault proxy for the network-fault tests (issue 12, 网络问题), run inside the test's
event loop: it forwards bytes between a client and a server and can misbehave on demand.

- `drop_replies`: forward the request, then close both sides as soon as the server starts to
  answer (the request was processed; its answer is lost on the way back);
- `delay`: hold every chunk from the server this many seconds;
- `blackhole`: keep connections open but forward nothing more (a half-open peer);
- `cut()`: close every connection now (a dropped link mid-transaction).

Written here because nothing maintained does this in-process with asyncio streams in a few
lines (toxiproxy is a separate Go server)."""
from __future__ import annotations

import asyncio
import contextlib


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.drop_replies = False
        self.delay = 0.0
        self.blackhole = False
        self.replies_dropped = 0
        self._server: asyncio.base_events.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    def cut(self) -> None:
        for client, server in list(self._links):
            client.close()
            server.close()
        self._links.clear()

    async def _accept(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        link = (client_writer, server_writer)
        self._links.add(link)
        up = asyncio.create_task(self._pipe(client_reader, server_writer, link, upstream=True))
        down = asyncio.create_task(self._pipe(server_reader, client_writer, link, upstream=False))
        self._tasks.update((up, down))
        await asyncio.gather(up, down, return_exceptions=True)
        self._tasks.difference_update((up, down))
        self._links.discard(link)
        for writer in link:
            writer.close()

    async def _pipe(self, reader, writer, link, *, upstream: bool) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError, ConnectionError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                while self.blackhole:
                    await asyncio.sleep(0.05)
                if not upstream:
                    if self.drop_replies:
                        self.replies_dropped += 1
                        for w in link:
                            w.close()
                        return
                    if self.delay:
                        await asyncio.sleep(self.delay)
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
