"""The load generator's arrival shapes (bench/loadgen.py), against a minimal keep-alive server."""
from __future__ import annotations

import asyncio
import time

from guahao.bench import loadgen


async def _server():
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n") if not reader.at_eof() else b""
            if not head:
                break
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()
    return await asyncio.start_server(serve, "127.0.0.1", 0)


async def test_a_spread_sends_request_i_no_earlier_than_its_share_of_the_spread():
    server = await _server()
    port = server.sockets[0].getsockname()[1]
    requests = [loadgen.build_request("GET", f"127.0.0.1:{port}", f"/r/{i}") for i in range(20)]
    try:
        run = await loadgen.fire("127.0.0.1", port, requests, connections=4, start_wall=time.time() + 0.05,
                                 warmup_path="/", spread_s=0.4)
    finally:
        server.close()
    assert [a.status for a in run.answers] == [200] * 20
    for a in run.answers:
        assert a.sent - run.t0 >= 0.4 * a.index / 20 - 1e-3, a.index
    assert max(a.sent for a in run.answers) - run.t0 >= 0.38  # the last one waited for its turn
