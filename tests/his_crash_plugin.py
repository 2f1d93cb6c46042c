"""Test-only worker plugin (GUAHAO_JOB_PLUGINS=tests.his_crash_plugin) that opens the crash
window of a HIS write-back: with HISCRASH_STALL=1 the HIS client, after the HIS has confirmed
an order and before the job may record the answer, writes a marker file and waits until the
test kills the process. Periodic jobs are switched off so that only the test's messages run
(the worker's real clock is not the test's frozen one). Kept out of the product code."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from guahao.his.client import HisClient
from guahao.outbox import registry

registry.PERIODIC.clear()

_real_confirm = HisClient.confirm


async def _confirm_then_stall(self, order_id, patient_id=None):
    order = await _real_confirm(self, order_id, patient_id)
    if os.environ.get("HISCRASH_STALL") == "1":
        (Path(os.environ["HISCRASH_DIR"]) / "his_confirmed").write_text(f"{order_id} {order.visit_no}\n")
        await asyncio.sleep(3600)  # the test SIGKILLs us here
    return order


HisClient.confirm = _confirm_then_stall
