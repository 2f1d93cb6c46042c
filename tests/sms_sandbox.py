"""A test-only SMS gateway, run as its own process: it behaves like Aliyun / Tencent Cloud SMS
where the crash tests need it. Every request is logged; a message is delivered to the phone
once per out id (Aliyun's OutId, Tencent's SessionContext): a repeat of an out id it already
delivered is answered `duplicate` and not delivered again, the way a real gateway drops it.

    python -m tests.sms_sandbox PORT
"""
from __future__ import annotations

import itertools
import sys

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app() -> Starlette:
    received: list[dict] = []  # every request, in arrival order
    delivered: dict[str, dict] = {}  # out id -> the message the phone got
    ids = itertools.count(1)

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def send(request: Request) -> JSONResponse:
        message = await request.json()
        out_id = message.get("out_id")
        if not out_id or not message.get("phone"):
            return JSONResponse({"code": "isv.INVALID_PARAMETERS"}, status_code=400)
        received.append(message)
        if out_id in delivered:
            return JSONResponse({"code": "OK", "status": "duplicate", "biz_id": delivered[out_id]["biz_id"]})
        delivered[out_id] = {**message, "biz_id": f"sms-{next(ids)}"}
        return JSONResponse({"code": "OK", "status": "accepted", "biz_id": delivered[out_id]["biz_id"]})

    async def messages(request: Request) -> JSONResponse:
        return JSONResponse({"received": received, "delivered": list(delivered.values())})

    return Starlette(routes=[Route("/healthz", healthz), Route("/send", send, methods=["POST"]),
                             Route("/admin/messages", messages)])


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
