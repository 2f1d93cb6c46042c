"""HIS jobs: the write-back handlers of the `his.*` outbox topics (both modes) and the
periodic sync (synced hospitals) and drift checks. The logic is in writeback.py, sync.py and
drift.py; this module only registers it."""
from __future__ import annotations

import datetime as dt
from typing import Any

from guahao.his import drift, sync, writeback
from guahao.outbox.registry import JobContext, PermanentFailure, handler, periodic

periodic("his.sync", dt.timedelta(minutes=5))
periodic("his.drift_check", dt.timedelta(minutes=15))


def _booking_id(payload: dict[str, Any]) -> int:
    value = payload.get("booking_id")
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermanentFailure("payload lacks an integer booking_id")
    return value


@handler("his.booking_confirmed", max_attempts=writeback.MAX_ATTEMPTS)
async def booking_confirmed(ctx: JobContext, payload: dict) -> None:
    await writeback.write_confirmed(ctx, _booking_id(payload))


@handler("his.booking_cancelled", max_attempts=writeback.MAX_ATTEMPTS)
async def booking_cancelled(ctx: JobContext, payload: dict) -> None:
    await writeback.write_cancelled(ctx, _booking_id(payload))


@handler("his.booking_no_show", max_attempts=writeback.MAX_ATTEMPTS)
async def booking_no_show(ctx: JobContext, payload: dict) -> None:
    await writeback.write_no_show(ctx, _booking_id(payload))


@handler("his.sync")
async def sync_all(ctx: JobContext, payload: dict) -> None:
    """Every synced hospital, one after the other; one hospital's HIS trouble is logged and
    does not keep the others from syncing."""
    await sync.sync_all(ctx)


@handler("his.drift_check")
async def drift_check(ctx: JobContext, payload: dict) -> None:
    await drift.check_all(ctx)
