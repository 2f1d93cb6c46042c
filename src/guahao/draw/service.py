"""Release modes (fifo | draw) and the draws they call for.

The mode of a schedule is its own setting, else its department's, else the hospital rule
(`hospital_rules.release_mode`). It is fixed on the schedule (`schedules.release_mode`,
read by the hold under the schedule's share lock) by `do_apply_modes`, which also creates the
schedule's draw with its commitment: run by a staff change at once and by the `draw.prepare`
job every minute (which catches schedules generated or published since, and hospital rule
edits). A mode can change only while its draw has not opened (`opens_at` in the future):
afterwards entries or holds may exist, and the schedule keeps the mode it opened with.

Lock order of the draw feature: draw row → schedule → person → seats → booking (the draw
row is first; the hold that allocates a winner's seat takes the rest as every hold does).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core import audit
from guahao.draw import errors, fairness
from guahao.draw.models import Draw, ReleaseModeSetting
from guahao.outbox import service as outbox
from guahao.scheduling import service as scheduling_service

# in-flight entries that arrived before the close get this long to commit before the draw
GRACE = dt.timedelta(seconds=2)
RUN_TOPIC = "draw.run"
REALTIME = "realtime"  # at such a hospital the HIS decides every hold: no draw there


def timeline(release_at: dt.datetime, rules: hospital_rules.Rules) -> dict[str, dt.datetime]:
    closes_at = release_at + dt.timedelta(seconds=rules.draw_window_seconds)
    return {"opens_at": release_at - dt.timedelta(minutes=rules.draw_prequeue_minutes), "release_at": release_at,
            "closes_at": closes_at, "result_at": closes_at + GRACE}


async def _settings(session: AsyncSession, hospital_id: int) -> tuple[dict[int, str], dict[int, str]]:
    rows = list(await session.scalars(select(ReleaseModeSetting).where(ReleaseModeSetting.hospital_id == hospital_id)))
    return ({r.department_id: r.mode for r in rows if r.department_id is not None},
            {r.schedule_id: r.mode for r in rows if r.schedule_id is not None})


async def _lock_draw(session: AsyncSession, schedule_id: int) -> Draw | None:
    return await session.scalar(select(Draw).where(Draw.schedule_id == schedule_id).with_for_update()
                                .execution_options(populate_existing=True))


async def _ensure_draw(session: AsyncSession, schedule, times: dict, *, now: dt.datetime) -> Draw:
    """The schedule's open draw, created with a fresh secret and its commitment (insert-or-
    nothing on the schedule, so the job and a staff change racing create one draw)."""
    secret = fairness.new_secret()
    values = dict(hospital_id=schedule.hospital_id, schedule_id=schedule.id, status="open", **times,
                  commitment=fairness.commitment(secret), secret=secret, created_at=now)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    await session.execute(insert(Draw.__table__).values(**values).on_conflict_do_nothing(index_elements=["schedule_id"]))
    draw = await _lock_draw(session, schedule.id)
    assert draw is not None
    if draw.status == "cancelled":  # switched off and on again before opening: nobody entered
        secret = fairness.new_secret()
        draw.status, draw.secret, draw.commitment = "open", secret, fairness.commitment(secret)
    for name, value in times.items():
        setattr(draw, name, value)
    await session.flush()
    await outbox.enqueue(session, topic=RUN_TOPIC, dedupe_key=f"{RUN_TOPIC}:{draw.id}", payload={"draw_id": draw.id},
                         now=now, hospital_id=schedule.hospital_id, available_at=draw.result_at)
    return draw


async def do_apply_modes(session: AsyncSession, hospital_id: int, *, now: dt.datetime,
                         schedule_ids: set[int] | None = None) -> int:
    """Fix the release mode of the hospital's schedules whose draw has not opened (all, or
    those in `schedule_ids`), creating or cancelling their draws. Returns how many changed."""
    hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    rules = await hospital_rules.get_rules(session, hospital_id)
    by_department, by_schedule = await _settings(session, hospital_id)
    changed = 0
    for schedule in await scheduling_service.schedules_released_after(session, hospital_id, now):
        if schedule_ids is not None and schedule.id not in schedule_ids:
            continue
        mode = by_schedule.get(schedule.id) or by_department.get(schedule.department_id) or rules.release_mode
        if hospital.his_mode == REALTIME:
            mode = "fifo"
        times = timeline(schedule.release_at, rules)
        draw = await _lock_draw(session, schedule.id)
        if times["opens_at"] <= now or (draw is not None and draw.status != "cancelled" and draw.opens_at <= now):
            continue  # begun: the schedule keeps the mode it opened with
        if mode == "draw":
            await _ensure_draw(session, schedule, times, now=now)
        elif draw is not None and draw.status == "open":
            draw.status = "cancelled"
        if schedule.release_mode != mode:
            await scheduling_service.set_release_mode(session, schedule.id, mode, now=now)
            changed += 1
    return changed


async def hospitals_to_prepare(session: AsyncSession) -> list[int]:
    """Hospitals whose rule, settings or open draws may call for a change."""
    ids = {r.hospital_id for r in await hospital_rules.list_rules(session) if r.release_mode == "draw"}
    ids |= set(await session.scalars(select(ReleaseModeSetting.hospital_id).distinct()))
    ids |= set(await session.scalars(select(Draw.hospital_id).where(Draw.status == "open").distinct()))
    return sorted(ids)


async def do_set_mode(session: AsyncSession, hospital_id: int, *, mode: str, now: dt.datetime, staff_id: int | None,
                      department_id: int | None = None, schedule_id: int | None = None) -> int:
    """A department's or a schedule's release mode (`inherit` removes the setting), audited;
    applied at once to the schedules it touches."""
    if department_id is not None:
        await catalog_service.get_department_or_raise(session, department_id, hospital_id=hospital_id,
                                                      include_inactive=True)
        where = ReleaseModeSetting.department_id == department_id
    else:
        assert schedule_id is not None
        schedule = await scheduling_service.get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id)
        rules = await hospital_rules.get_rules(session, hospital_id)
        if timeline(schedule.release_at, rules)["opens_at"] <= now or schedule.release_mode == "drawn":
            raise errors.ReleaseModeFrozen()
        where = ReleaseModeSetting.schedule_id == schedule_id
    if mode == "draw":
        hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        if hospital.his_mode == REALTIME:
            raise errors.DrawNeedsLocalHolds()
    row = await session.scalar(select(ReleaseModeSetting).where(where).with_for_update())
    old = row.mode if row is not None else "inherit"
    if mode == "inherit":
        if row is not None:
            await session.delete(row)
    elif row is None:
        session.add(ReleaseModeSetting(hospital_id=hospital_id, department_id=department_id, schedule_id=schedule_id,
                                       mode=mode, updated_at=now))
    else:
        row.mode, row.updated_at = mode, now
    await session.flush()
    if old != mode:
        subject = ("department", department_id) if department_id is not None else ("schedule", schedule_id)
        await audit.do_record(session, now=now, action="release_mode.update", object_type=subject[0],
                              object_id=subject[1], hospital_id=hospital_id, staff_id=staff_id,
                              detail={"mode": [old, mode]})
    return await do_apply_modes(session, hospital_id, now=now)


async def list_settings(session: AsyncSession, hospital_id: int) -> tuple[dict[int, str], dict[int, str]]:
    """({department id: mode}, {schedule id: mode}) set at the hospital."""
    return await _settings(session, hospital_id)
