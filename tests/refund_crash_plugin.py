"""Test-only worker plugin (GUAHAO_JOB_PLUGINS=tests.refund_crash_plugin) that opens the crash
window of a refund: with REFUNDCRASH_STALL=1 the sandbox client, after the provider has
accepted a refund and before the job may record it, writes a marker file and then waits
until the test kills the process. Kept out of the product code: it wraps the client here."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

from guahao.payments.paysim_client import SandboxPayments

_real_refund = SandboxPayments.refund


async def _refund_then_stall(self, **kwargs):
    result = await _real_refund(self, **kwargs)
    if os.environ.get("REFUNDCRASH_STALL") == "1":
        marker = Path(os.environ["REFUNDCRASH_DIR"]) / "provider_refunded"
        marker.write_text(f"{kwargs['out_refund_no']} {result.refund_id}\n")
        await asyncio.sleep(3600)  # the test SIGKILLs us here
    return result


SandboxPayments.refund = _refund_then_stall
