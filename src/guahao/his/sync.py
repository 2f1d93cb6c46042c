"""The sync job of synced (and realtime) hospitals: copy the HIS platform pool into our
schedules and slots.

Per hospital: a read (connection, codes, what is mirrored already), then `availability` for
the booking window with no transaction open, then one short write transaction per HIS
session (`scheduling.mirror.do_mirror_session`), so one bad session never blocks the others
and no transaction waits on the network.

- sessions and bands we lack are created (matched by his_session_id / his_band_id;
  departments and doctors by their his_code);
- a capacity increase grows the pool; a cut below what is sold keeps max(new, sold) seats and
  flags the bookings beyond it (`his_flag='capacity_cut'`) for the hospital (listed for the
  operator by the drift API); nobody is cancelled silently;
- a session the HIS cancelled becomes our 停诊 (booking's `do_suspend`: revoke, refund, SMS)
  once: a schedule already suspended is left alone;
- the HIS's on-site pool is not ours: the window selling it changes nothing here.

Bad data from the HIS (negative or absurd capacities, unknown codes, malformed answers) is
refused and logged, session by session (the client refuses a malformed answer whole), and
never reaches a pool.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import structlog

from guahao.booking import his_state, hospital_actions
from guahao.booking.lifecycle import Actor
from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.catalog.service import FeeNotConfigured
from guahao.core import audit
from guahao.core.db import Database
from guahao.his import connections
from guahao.his.client import HisError, HisSession
from guahao.outbox.registry import JobContext
from guahao.scheduling import mirror
from guahao.scheduling import service as scheduling_service

log = structlog.get_logger("guahao.his.sync")

WINDOW_DAYS = 14  # today and the next 14 days (the HIS answers at most 31)
MAX_BAND_CAPACITY = 1000  # more than any real clinic band: a number like that is bad data
SUSPEND_REASON = "医院停诊(医院信息系统已取消该出诊)"


@dataclass
class SyncReport:
    hospital_id: int
    sessions: int = 0
    created: int = 0
    grown: int = 0
    cut: int = 0
    suspended: list[int] = field(default_factory=list)  # schedule ids revoked because the HIS cancelled them
    flagged: list[int] = field(default_factory=list)  # booking ids beyond a capacity cut
    refused: list[tuple[str, str]] = field(default_factory=list)  # (HIS session id, why)


class _Refused(Exception):
    pass


def _time(value: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise _Refused(f"band time {value!r} is not HH:MM") from None


def _to_mirror(s: HisSession, pool: str, departments: dict, doctors: dict) -> mirror.MirrorSession:
    doctor = doctors.get(s.doctor_code)
    department = departments.get(s.department_code)
    if department is None or doctor is None:
        raise _Refused("unknown department or doctor code")
    if doctor.department_id != department.id:
        raise _Refused("the doctor is not of this department here")
    bands = []
    for band in s.bands:
        start, end = _time(band.start), _time(band.end)
        if end <= start:
            raise _Refused("a band that ends before it starts")
        ours = [p for p in band.pools if p.pool == pool]
        capacity = ours[0].capacity if ours else 0  # a band without our pool sells nothing here
        if capacity > MAX_BAND_CAPACITY:
            raise _Refused("an implausible capacity")
        bands.append(mirror.MirrorBand(his_band_id=band.band_id, start=start, end=end, capacity=capacity))
    if not bands or len({b.his_band_id for b in bands}) != len(bands):
        raise _Refused("no bands, or a band twice")
    return mirror.MirrorSession(his_session_id=s.session_id, date=s.date, period=mirror.HALF_TO_PERIOD[s.half],
                                department_id=department.id, doctor_id=doctor.id,
                                registration_level=doctor.registration_level, title=doctor.title,
                                bands=tuple(bands))


async def _suspend(db: Database, hospital_id: int, schedule_id: int, now: dt.datetime) -> bool:
    """停诊 of a schedule whose HIS session was cancelled; False when it already was (the
    next sync sees the same cancelled session: refunds and SMS go out once)."""
    async with db.begin() as session:
        schedule = await scheduling_service.lock_schedule(session, schedule_id, exclusive=True)
        if schedule is None or schedule.status == "suspended":
            return False
        revoked = await hospital_actions.do_suspend(session, schedule_id=schedule_id, hospital_id=hospital_id,
                                                    reason=SUSPEND_REASON, actor=Actor.system(), now=now)
        await audit.do_record(session, now=now, action="schedule.suspend_by_his", object_type="schedule",
                              object_id=schedule_id, hospital_id=hospital_id, detail={"revoked": len(revoked)})
    log.warning("his_session_cancelled", hospital_id=hospital_id, schedule_id=schedule_id, revoked=len(revoked))
    return True


async def _mirror_one(db: Database, hospital_id: int, wanted: mirror.MirrorSession, now: dt.datetime,
                      report: SyncReport) -> None:
    async with db.begin() as session:
        outcome = await mirror.do_mirror_session(session, hospital_id, wanted, now=now)
        flagged = await his_state.do_flag(session, outcome.over_capacity, flag="capacity_cut", now=now)
        if outcome.created or outcome.grown or outcome.cut or flagged:  # what the HIS changed, for the hospital
            await audit.do_record(session, now=now, action="schedule.sync_from_his", object_type="schedule",
                                  object_id=outcome.schedule_id or 0, hospital_id=hospital_id,
                                  detail={"his_session_id": wanted.his_session_id, "created": outcome.created,
                                          "grown": outcome.grown, "cut": outcome.cut, "flagged": flagged})
    report.created += outcome.created
    report.grown += outcome.grown
    report.cut += outcome.cut
    report.flagged += flagged
    if outcome.over_capacity:
        log.warning("his_capacity_cut_below_sold", hospital_id=hospital_id, schedule_id=outcome.schedule_id,
                    over=len(outcome.over_capacity), newly_flagged=len(flagged))


async def sync_hospital(db: Database, hospital_id: int, *, now: dt.datetime) -> SyncReport:
    """Mirror one synced hospital's HIS platform pool for the booking window. Raises the
    client's HisError when the HIS cannot be read at all (nothing changed then)."""
    report = SyncReport(hospital_id)
    async with db.read() as session:
        conn = await connections.get_connection(session, hospital_id)
        client = await connections.client_for(session, hospital_id)
        rules = await hospital_rules.get_rules(session, hospital_id)
        departments = await catalog_service.departments_by_his_code(session, hospital_id)
        doctors = await catalog_service.doctors_by_his_code(session, hospital_id)
        today = now.astimezone(rules.tz).date()
        known = await mirror.mirrored_sessions(session, hospital_id, today - dt.timedelta(days=1),
                                               today + dt.timedelta(days=WINDOW_DAYS))
    if conn is None or client is None:
        log.warning("his_sync_without_connection", hospital_id=hospital_id)
        return report
    sessions = await client.availability(today, today + dt.timedelta(days=WINDOW_DAYS))
    for his_session in sessions:
        report.sessions += 1
        try:
            if his_session.state == "cancelled":
                if his_session.session_id in known and await _suspend(db, hospital_id, known[his_session.session_id],
                                                                      now):
                    report.suspended.append(known[his_session.session_id])
                continue
            if his_session.state != "open":
                raise _Refused(f"unknown session state {his_session.state!r}")
            await _mirror_one(db, hospital_id, _to_mirror(his_session, conn.pool, departments, doctors), now, report)
        except (_Refused, mirror.MirrorRefused, FeeNotConfigured) as exc:
            report.refused.append((his_session.session_id, str(exc)))
            log.warning("his_sync_refused", hospital_id=hospital_id, his_session_id=his_session.session_id,
                        reason=str(exc))
    log.info("his_sync", hospital_id=hospital_id, sessions=report.sessions, created=report.created,
             grown=report.grown, cut=report.cut, suspended=len(report.suspended), flagged=len(report.flagged),
             refused=len(report.refused))
    return report


async def sync_all(ctx: JobContext) -> list[SyncReport]:
    async with ctx.db.read() as session:
        # realtime hospitals too: the HIS decides each of their holds, but patients browse and
        # pick our mirror of its sessions and bands (slots.his_band_id), so the layout,
        # capacity changes and cancelled sessions (停诊) are copied the same way
        hospital_ids = [*await catalog_service.hospitals_in_mode(session, "synced"),
                        *await catalog_service.hospitals_in_mode(session, "realtime")]
    reports = []
    for hospital_id in hospital_ids:
        try:
            reports.append(await sync_hospital(ctx.db, hospital_id, now=ctx.clock.now()))
        except HisError as exc:  # this hospital's HIS is down or talking nonsense: the next run retries
            log.warning("his_sync_failed", hospital_id=hospital_id, code=exc.code)
    return reports
