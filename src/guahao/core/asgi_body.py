"""Reading a request body in a middleware without taking it from the app behind it."""
from __future__ import annotations

from starlette.types import Message, Receive


async def buffered(receive: Receive) -> tuple[bytes, Receive]:
    """The request body, and a `receive` that hands it on to the app as if unread (a client
    that went away is handed on as such)."""
    chunks, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: let the route see it
            async def replay_disconnect(gone: Message = message) -> Message:
                return gone
            return b"", replay_disconnect
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body, sent = b"".join(chunks), False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}
    return body, replay
