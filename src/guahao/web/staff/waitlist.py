"""The back office's view of a schedule's 候补 queue: every entry in order, its state, offers
and why it ended (patients masked). Read only: the queue runs by itself (waitlist.promote)."""
from __future__ import annotations

from fastapi import APIRouter

from guahao.catalog import rules as hospital_rules
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import queries as waitlist_queries
from guahao.web.staff.base import ADMIN, FRONT_DESK, SCHEDULER, StaffPageDep, _, render

router = APIRouter(prefix="/staff", include_in_schema=False)
READERS = (ADMIN, SCHEDULER, FRONT_DESK)
STATE_LABELS = {"waiting": _("Waiting"), "offered": _("Offered, awaiting payment"), "fulfilled": _("Booked"),
                "lapsed": _("Offer lapsed"), "left": _("Left"), "skipped": _("Skipped"), "closed": _("Closed at cutoff")}


@router.get("/hospitals/{hospital_id}/schedules/{schedule_id}/waitlist")
async def queue_page(hospital_id: int, schedule_id: int, page: StaffPageDep):
    page.need(*READERS, hospital_id=hospital_id)
    state = page.request.app.state
    async with state.db.read() as session:
        schedule = await scheduling_service.get_schedule_or_raise(session, schedule_id, hospital_id=hospital_id)
        rows = await waitlist_queries.queue_for_staff(session, schedule.id)
        rules = await hospital_rules.get_rules(session, hospital_id)
        wl_rules = await waitlist_queries.rules_for(session, hospital_id)
    zone = rules.tz
    return render(page, "staff/waitlist.html", schedule=schedule, rows=rows, zone=zone, rules=wl_rules,
                  starts=schedule.starts_at.astimezone(zone), state_labels=STATE_LABELS,
                  waiting=sum(1 for r in rows if r.state == "waiting"))
