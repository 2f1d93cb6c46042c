"""The caller's 候补 (waitlist) entries as Appointments: listed by `GET /Appointment`, read as
`Appointment/waitlist-<entry id>`, left by PATCH with status `cancelled`.

Through the waitlist's public modules only: `waitlist.queries` (the API's own entry view,
`WaitlistEntryRead`, and the account check) and `waitlist.actions.do_leave` (退出候补, the
API's leave), mapped by fhir/mapping.py. Which entries are Appointments of their own is
`mapping.waitlist_status`: a waiting entry (`waitlist`) or one that ended without an offer
(`cancelled`); an entry that was offered a seat is its offer's hold booking, served as that
booking's Appointment, so nothing is listed twice. Another account's entry is not found,
like a missing one.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import Request

from guahao.core.errors import NotFound
from guahao.fhir import mapping
from guahao.fhir.resources import EVER
from guahao.scheduling import availability
from guahao.waitlist import actions as waitlist_actions
from guahao.waitlist import queries as waitlist_queries


def entry_id(resource_id: str) -> int | None:
    """`waitlist-12` → 12; None for any other id (a booking's, a proposed one's)."""
    if not resource_id.startswith(mapping.WAITLIST_PREFIX):
        return None
    rest = resource_id[len(mapping.WAITLIST_PREFIX):]
    if not rest.isdigit() or len(rest) > 18:
        raise NotFound("waitlist_entry")
    return int(rest)


async def _schedules(session, now: dt.datetime, ids: set[int]) -> dict[int, availability.ReleasedSchedule]:
    """The entries' schedules as the public sees them (an entry's schedule was released and
    sold out when it joined; a 停诊 keeps it listed). No HIS question: realtime hospitals
    have no waitlist."""
    if not ids:
        return {}
    found = await availability.released_schedules(session, now=now, first=EVER[0], last=EVER[1],
                                                  schedule_ids=sorted(ids))
    return {item.view.schedule_id: item for item in found}


async def appointments(request: Request, account_id: int) -> list[tuple[Any, dict[str, Any]]]:
    """(entry view, Appointment) for each of the account's entries that is an Appointment of
    its own, newest first: the API's list (`GET /api/v1/waitlist`, its 100 most recent)."""
    now = request.app.state.clock.now()
    async with request.app.state.db.read() as session:
        items = await waitlist_queries.list_for_account(session, account_id, now)
        schedules = await _schedules(session, now, {i.schedule_id for i in items})
    found = []
    for item in items:
        status = mapping.waitlist_status(item, now)
        if status is not None and item.schedule_id in schedules:
            found.append((item, mapping.waitlist_appointment(item, schedules[item.schedule_id], status=status)))
    return found


async def read(request: Request, account_id: int, entry: int) -> dict[str, Any]:
    """One of the account's entries; not found when it is another's, or when its offer's
    booking is its Appointment now."""
    now = request.app.state.clock.now()
    async with request.app.state.db.read() as session:
        item = await waitlist_queries.get_read_for_account(session, account_id, entry, now)
        schedules = await _schedules(session, now, {item.schedule_id})
    status = mapping.waitlist_status(item, now)
    if status is None or item.schedule_id not in schedules:
        raise NotFound("waitlist_entry")
    return mapping.waitlist_appointment(item, schedules[item.schedule_id], status=status)


async def leave(request: Request, account_id: int, entry: int) -> dict[str, Any]:
    """退出候补 (`waitlist.actions.do_leave`, free of charge), in one transaction with the
    answer's read. An entry the patient already left answers as it is (a retried cancel); an
    entry that ended otherwise is refused by `do_leave` (`waitlist_entry_ended`). If a seat was
    offered between the read and the leave, `do_leave` gives the offer up too, as the API's
    leave does, and the answer is the entry, cancelled."""
    now = request.app.state.clock.now()
    async with request.app.state.db.begin() as session:
        item = await waitlist_queries.get_read_for_account(session, account_id, entry, now)
        if mapping.waitlist_status(item, now) is None:
            raise NotFound("waitlist_entry")
        if item.state != "left":
            await waitlist_actions.do_leave(session, account_id=account_id, entry_id=entry, now=now)
            item = await waitlist_queries.get_read_for_account(session, account_id, entry, now)
        schedules = await _schedules(session, now, {item.schedule_id})
    if item.schedule_id not in schedules:
        raise NotFound("waitlist_entry")
    return mapping.waitlist_appointment(item, schedules[item.schedule_id], status="cancelled")
