"""Drift detection: our bookings compared with the HIS's orders of our platform.

Reads our side (bookings dated in the window, the unfinished write-backs and the oldest of
them: the write-back queue's lag), then `list_orders` with no transaction open, and compares.
Every difference is reported (a metric per kind, a log line with ids and counts only, the
staff API); none is "fixed" here: which side is right is the hospital's call.

Kinds:
- `missing_at_his`: ours is confirmed (or checked in, completed, a no-show), the HIS has no
  live order for it;
- `cancelled_at_window`: ours is live, the HIS order was cancelled at the hospital's window;
- `state_mismatch`: both have it, in states that disagree (the HIS cancelled a visit we
  still count, or still counts one we cancelled);
- `unknown_to_us`: the HIS has a live order under our platform that is no booking of ours.
A difference whose booking still has a write-back queued says so (`writeback_pending`): it
is probably the queue's lag, not drift.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

import structlog

from guahao.booking import his_state
from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core import metrics
from guahao.core.db import Database
from guahao.his import connections
from guahao.his.client import HisError, HisOrder, order_id_for
from guahao.outbox import service as outbox
from guahao.outbox.registry import JobContext

log = structlog.get_logger("guahao.his.drift")

PAST_DAYS, FUTURE_DAYS = 1, 29  # the HIS lists at most 31 days at a time
WRITEBACK_TOPICS = ("his.booking_confirmed", "his.booking_cancelled", "his.booking_no_show")
LIVE_AT_HIS = ("confirmed", "no_show")


@dataclass(frozen=True)
class Difference:
    kind: str
    order_id: str
    booking_id: int | None
    ours: str | None  # our booking state
    at_his: str | None  # the HIS order state (None: no order)
    his_session_id: str | None
    writeback_pending: bool = False


@dataclass
class DriftReport:
    hospital_id: int
    checked_at: dt.datetime
    first: dt.date
    last: dt.date
    bookings_checked: int = 0
    orders_checked: int = 0
    writeback_pending: int = 0
    writeback_lag_seconds: float | None = None
    differences: list[Difference] = field(default_factory=list)
    # None: compared; else why the HIS could not be read (our side of the report still stands)
    his_error: str | None = None
    flagged: list[dict] = field(default_factory=list)  # bookings with an open his_flag (e.g. capacity_cut)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in self.differences:
            out[d.kind] = out.get(d.kind, 0) + 1
        return out


def _compare(bookings: list[his_state.HisView], orders: list[HisOrder], pending: set[int]) -> list[Difference]:
    by_order = {o.order_id: o for o in orders}
    out = []
    for b in bookings:
        order = by_order.pop(order_id_for(b.id), None)
        at_his = order.state if order else None
        expected = his_state.EXPECTED_AT_HIS.get(b.state)
        kind = None
        if expected is not None:
            if order is None or at_his in ("locked", "expired"):
                kind = "missing_at_his"
            elif at_his == "cancelled":
                kind = "cancelled_at_window" if order.cancel_reason == "window" else "state_mismatch"
            elif at_his != expected and not (expected == "no_show" and at_his == "confirmed" and b.id in pending):
                kind = "state_mismatch"
        elif b.state != "held" and at_his in LIVE_AT_HIS:
            kind = "state_mismatch"  # we ended it, the HIS still counts the visit
        if kind is not None:
            out.append(Difference(kind, order_id_for(b.id), b.id, b.state, at_his,
                                  order.session_id if order else None, b.id in pending))
    for order in by_order.values():  # orders of ours that match no booking in the window
        if order.state in LIVE_AT_HIS:
            out.append(Difference("unknown_to_us", order.order_id, None, None, order.state, order.session_id))
    return out


async def check_hospital(db: Database, hospital_id: int, *, now: dt.datetime, strict: bool = True) -> DriftReport:
    """Compare one hospital's books with its HIS. When the HIS cannot be read: raises the
    HisError, or with `strict=False` returns our side (queue lag, flags) with `his_error`."""
    async with db.read() as session:
        rules = await hospital_rules.get_rules(session, hospital_id)
        today = now.astimezone(rules.tz).date()
        first, last = today - dt.timedelta(days=PAST_DAYS), today + dt.timedelta(days=FUTURE_DAYS)
        client = await connections.client_for(session, hospital_id)
        bookings = await his_state.of_visit_dates(session, hospital_id, first, last)
        pending: set[int] = set()
        for topic in WRITEBACK_TOPICS:
            pending |= {p.get("booking_id") for p in await outbox.unfinished_payloads(session, topic=topic,
                                                                                      hospital_id=hospital_id)}
        oldest = await outbox.oldest_unfinished(session, topic_prefix="his.booking_", hospital_id=hospital_id)
        flagged = await his_state.flagged(session, hospital_id)
    report = DriftReport(hospital_id=hospital_id, checked_at=now, first=first, last=last,
                         bookings_checked=len(bookings), writeback_pending=len(pending),
                         writeback_lag_seconds=(now - oldest).total_seconds() if oldest else None,
                         flagged=[{"booking_id": f.id, "flag": f.his_flag, "state": f.state} for f in flagged])
    try:
        if client is None:
            raise HisError("the hospital has no HIS connection", code="his_connection_missing")
        orders = await client.list_orders(first, last)
    except HisError as exc:
        if strict:
            raise
        report.his_error = exc.code
        log.warning("his_drift_unchecked", hospital_id=hospital_id, code=exc.code,
                    writeback_pending=len(pending), writeback_lag_s=report.writeback_lag_seconds)
        return report
    report.orders_checked = len(orders)
    report.differences = _compare(bookings, orders, pending)
    for kind, n in report.counts().items():
        metrics.HIS_DRIFT.labels(kind).inc(n)
    log.info("his_drift", hospital_id=hospital_id, differences=report.counts(), bookings=len(bookings),
             orders=len(orders), writeback_pending=len(pending), writeback_lag_s=report.writeback_lag_seconds,
             flagged=len(flagged))
    return report


def as_dict(report: DriftReport) -> dict:
    return asdict(report)


async def check_all(ctx: JobContext) -> list[DriftReport]:
    async with ctx.db.read() as session:
        hospital_ids = (await catalog_service.hospitals_in_mode(session, "synced")
                        + await catalog_service.hospitals_in_mode(session, "realtime"))
    reports = []
    for hospital_id in sorted(hospital_ids):
        try:
            reports.append(await check_hospital(ctx.db, hospital_id, now=ctx.clock.now()))
        except HisError as exc:
            log.warning("his_drift_failed", hospital_id=hospital_id, code=exc.code)
    return reports
