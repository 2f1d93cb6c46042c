"""Test-only worker plugin (GUAHAO_JOB_PLUGINS=tests.sms_crash_plugin) that sends booking
messages to the SMS sandbox process (tests/sms_sandbox.py, at SMSCRASH_URL) with our dedupe
key as the gateway's out id, as a real gateway client does (notifications/port.py). With
SMSCRASH_STALL=1 the first message, once the gateway has accepted it and before the worker
may record it sent, writes a marker file and waits for the test to SIGKILL the process.
SMSCRASH_LEASE shortens the send lease (notifications/delivery.py) so that the next worker
may take the message over within the test's patience. Kept out of the product code."""
from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path

import httpx

from guahao.notifications import delivery
from guahao.notifications.port import RecordingNotifier, Sms

delivery.SEND_LEASE = dt.timedelta(seconds=float(os.environ.get("SMSCRASH_LEASE", "120")))


async def _send_to_gateway(self, sms: Sms) -> None:
    async with httpx.AsyncClient(base_url=os.environ["SMSCRASH_URL"], timeout=10) as http:
        answer = await http.post("/send", json={"out_id": sms.out_id, "phone": sms.phone, "locale": sms.locale,
                                                "template": sms.gateway_template, "params": sms.params})
        answer.raise_for_status()
    if os.environ.get("SMSCRASH_STALL") == "1":
        try:
            fd = os.open(Path(os.environ["SMSCRASH_DIR"]) / "gateway_accepted", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            return  # only the first message is caught in the crash window
        os.write(fd, f"{sms.out_id}\n".encode())
        os.close(fd)
        await asyncio.sleep(3600)  # the test SIGKILLs us here


RecordingNotifier.send = _send_to_gateway
