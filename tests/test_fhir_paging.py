"""Searches of Location and Schedule page in SQL (LIMIT / OFFSET with a COUNT for `total`),
keeping the `_count` / `_offset` / `total` / `next` contract: walking the pages gives every
match once, in a stable order, and inactive hospitals (and their schedules) are neither listed
nor counted. On both databases."""
from __future__ import annotations

import contextlib
import datetime as dt

from sqlalchemy import event, update

from guahao.catalog.models import Hospital
from guahao.scheduling.models import Schedule
from tests.booking_builders import make_schedule
from tests.builders import make_department, make_hospital
from tests.fhir_support import BASE, DAY, check_body, entries


async def _walk(client, path: str, params: dict) -> tuple[list[str], list[int]]:
    """Every page of a search, following `next`: the ids in order and each page's `total`."""
    ids, totals = [], []
    response = await client.get(f"{BASE}/{path}", params=params)
    while True:
        assert response.status_code == 200, response.text
        body = check_body(response)
        totals.append(body["total"])
        ids += [r["id"] for r in entries(body)]
        following = [link["url"] for link in body["link"] if link["relation"] == "next"]
        if not following:
            return ids, totals
        response = await client.get(following[0])


@contextlib.contextmanager
def statements(db):
    """The SQL the read engine runs meanwhile."""
    seen: list[str] = []

    def remember(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine = db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", remember)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", remember)


async def _deactivate(db, hospital_id: int) -> None:
    async with db.begin() as session:
        await session.execute(update(Hospital).where(Hospital.id == hospital_id).values(active=False))


async def test_location_search_pages_in_sql_and_keeps_total_and_next(client, db, clock):
    now = clock.now()
    hospitals = [await make_hospital(db, now, name=f"第{n}医院", city="杭州市") for n in range(5)]
    await _deactivate(db, hospitals[2])
    await make_hospital(db, now, name="别城医院", city="南京市")
    with statements(db) as seen:
        first = check_body(await client.get(f"{BASE}/Location", params={"address-city": "杭州市", "_count": 2}))
    assert first["total"] == 4 and len(entries(first)) == 2
    assert any("FROM hospitals" in s and "LIMIT" in s for s in seen), seen
    ids, totals = await _walk(client, "Location", {"address-city": "杭州市", "_count": 2})
    assert totals == [4, 4] and sorted(ids) == sorted(str(h) for h in hospitals if h != hospitals[2])
    assert len(set(ids)) == len(ids)
    past = check_body(await client.get(f"{BASE}/Location", params={"address-city": "杭州市", "_offset": 10}))
    assert past["total"] == 4 and "entry" not in past


async def test_schedule_search_pages_in_sql_without_inactive_hospitals(client, db, clock):
    now = clock.now()
    schedules = []
    active, closed = await make_hospital(db, now), await make_hospital(db, now)
    for hospital in (active, closed):
        department = await make_department(db, hospital)
        for day in range(3):
            for period in ("morning", "afternoon"):
                schedule, _slots = await make_schedule(db, now, hospital_id=hospital, department_id=department,
                                                       doctor_id=None, day=DAY + dt.timedelta(days=day),
                                                       period=period, capacity=2)
                schedules.append((hospital, schedule))
    await _deactivate(db, closed)
    wanted = [s for h, s in schedules if h == active]
    await make_schedule(db, now, hospital_id=active, department_id=await make_department(db, active, name="外科"),
                        doctor_id=None, day=DAY - dt.timedelta(days=1), capacity=2)  # before the range asked
    async with db.begin() as session:  # 停诊 of one of them
        await session.execute(update(Schedule).where(Schedule.id == wanted[1]).values(status="suspended"))
    query = {"date": [f"ge{DAY.isoformat()}", f"le{(DAY + dt.timedelta(days=2)).isoformat()}"], "_count": 4}
    with statements(db) as seen:
        first = check_body(await client.get(f"{BASE}/Schedule", params=query))
    assert first["total"] == 6 and len(entries(first)) == 4
    assert any("FROM schedules" in s and "LIMIT" in s for s in seen), seen
    ids, totals = await _walk(client, "Schedule", query)
    assert totals == [6, 6]
    assert ids == [str(s) for s in wanted]  # date, then start, then id; no inactive hospital's
    # `next` keeps every value of a repeated parameter (both ends of the date range)
    suspended = check_body(await client.get(f"{BASE}/Schedule", params={**query, "active": "false"}))
    assert suspended["total"] == 1 and [r["id"] for r in entries(suspended)] == [str(wanted[1])]
    listed = check_body(await client.get(f"{BASE}/Schedule", params={**query, "active": "true", "_count": 1,
                                                                      "_offset": 1}))
    assert listed["total"] == 5 and [r["id"] for r in entries(listed)] == [str(wanted[2])]
