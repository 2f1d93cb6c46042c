"""The hospital admin's 候补 and 摇号 pages: the waitlist rules (K, pay window, cutoff, strikes,
quiet hours), the release mode of each department, and (for schedulers too) one session's
release mode on its page.

Every save calls what the JSON routes call (waitlist.rules.do_update_rules,
draw.service.do_set_mode), so the audit rows and the refusals (a release already begun:
`release_mode_frozen`; a realtime-HIS hospital: `draw_not_available`) are the same. The
hospital's own release mode and the draw's window and pre-queue are booking rules: shown here,
changed on the booking rules page with the rest of the rules.
"""
from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from guahao.catalog import rules as hospital_rules
from guahao.catalog import service as catalog_service
from guahao.core.errors import GuahaoError
from guahao.draw import service as draw_service
from guahao.draw.schemas import ReleaseModeUpdate
from guahao.scheduling import service as scheduling_service
from guahao.waitlist import rules as waitlist_rules
from guahao.waitlist.schemas import WaitlistRulesUpdate
from guahao.web.staff import forms, suspend
from guahao.web.staff.base import ADMINS, NAV, SCHEDULERS, NavItem, StaffPageDep, _, form_of, parse, redirect, render

router = APIRouter(prefix="/staff", include_in_schema=False)

NAV.extend([
    NavItem("/staff/hospitals/{hospital_id}/waitlist-rules", _("候补 (waitlist) rules"), ADMINS),
    NavItem("/staff/hospitals/{hospital_id}/release-modes", _("Release by draw (摇号)"), ADMINS),
])

# (field, label, kind, help), as on the booking rules page
WAITLIST_FIELDS = [
    ("enabled", _("Patients may join the 候补 queue of a sold-out session"), "bool", ""),
    ("max_entries_per_person", _("Most live 候补 entries per person (K)"), "int", _("1 to 10.")),
    ("offer_minutes", _("Minutes an offered number waits for payment"), "int",
     _("5 to 1440 minutes; never past the booking close. An offer made in the quiet hours counts from their end.")),
    ("cutoff_minutes_before_visit_day", _("The queue closes minutes before the visit day"), "int",
     _("60 = 23:00 the day before; -720 to 2880.")),
    ("lapse_counts_as_strike", _("An unpaid offer counts as a strike"), "bool",
     _("Counted toward the booking restriction like a cancellation.")),
    ("quiet_from", _("Quiet hours from"), "time", ""),
    ("quiet_until", _("Quiet hours until"), "time", _("An offer made in these hours counts its pay window from their end.")),
]
MODE_LABELS = {"inherit": _("As the hospital rule"), "fifo": _("First come, first served"),
               "draw": _("By draw (摇号)"), "drawn": _("Drawn; the rest first come")}


def _waitlist_values(form: dict[str, str]) -> dict:
    values: dict = {}
    for name, _label, kind, _help in WAITLIST_FIELDS:
        if kind == "int":
            values[name] = forms.integer(form, name)
        elif kind == "bool":
            values[name] = forms.checked(form, name)
        else:
            values[name] = forms.text(form, name)
    return values


def _shown(rules: waitlist_rules.Rules) -> dict:
    values = dataclasses.asdict(rules)
    for name in ("quiet_from", "quiet_until"):
        values[name] = values[name].strftime("%H:%M")
    return values


async def _waitlist_page(page, hospital_id: int, *, values: dict | None = None, status: int = 200, **extra):
    async with page.request.app.state.db.read() as session:
        hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        rules = await waitlist_rules.get_rules(session, hospital_id)
    return render(page, "staff/admin/waitlist_rules.html", status=status, hospital=hospital, fields=WAITLIST_FIELDS,
                  values=values or _shown(rules), **extra)


@router.get("/hospitals/{hospital_id}/waitlist-rules")
async def waitlist_rules_form(hospital_id: int, page: StaffPageDep, saved: int = 0):
    page.need(*ADMINS, hospital_id=hospital_id)
    return await _waitlist_page(page, hospital_id, notice=page._("The 候补 rules were saved.") if saved else None)


@router.post("/hospitals/{hospital_id}/waitlist-rules")
async def waitlist_rules_save(hospital_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(WaitlistRulesUpdate, _waitlist_values(form))
        async with state.db.begin() as session:
            await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
            await waitlist_rules.do_update_rules(session, hospital_id, body.model_dump(exclude_none=True),
                                                 now=state.clock.now(), staff_id=staff.staff_id)
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await _waitlist_page(page, hospital_id, values=dict(form), status=exc.status,
                                    error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/waitlist-rules?saved=1")


# --- release modes ----------------------------------------------------------------------------

async def _modes_page(page, hospital_id: int, *, status: int = 200, **extra):
    state = page.request.app.state
    async with state.db.read() as session:
        hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        rules = await hospital_rules.get_rules(session, hospital_id)
        departments = await catalog_service.list_departments(session, hospital_id)
        by_department, by_schedule = await draw_service.list_settings(session, hospital_id)
        schedules = [await scheduling_service.get_schedule_or_raise(session, sid) for sid in sorted(by_schedule)]
    return render(page, "staff/admin/release_modes.html", status=status, hospital=hospital, rules=rules,
                  tree=catalog_service.department_tree(departments), by_department=by_department,
                  by_schedule=by_schedule, schedules=schedules, mode_labels=MODE_LABELS,
                  realtime=hospital.his_mode == draw_service.REALTIME, **extra)


@router.get("/hospitals/{hospital_id}/release-modes")
async def release_modes(hospital_id: int, page: StaffPageDep, changed: int | None = None):
    page.need(*ADMINS, hospital_id=hospital_id)
    notice = (page._("Saved; %(n)s sessions not yet released follow it now.") % {"n": changed}
              if changed is not None else None)
    return await _modes_page(page, hospital_id, notice=notice)


@router.post("/hospitals/{hospital_id}/release-modes/departments/{department_id}")
async def department_mode(hospital_id: int, department_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(ReleaseModeUpdate, {"mode": forms.text(form, "mode")})
        async with state.db.begin() as session:
            changed = await draw_service.do_set_mode(session, hospital_id, mode=body.mode, now=state.clock.now(),
                                                     staff_id=staff.staff_id, department_id=department_id)
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await _modes_page(page, hospital_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/release-modes?changed={changed}")


@router.post("/hospitals/{hospital_id}/schedules/{schedule_id}/release-mode")
async def schedule_mode(hospital_id: int, schedule_id: int, page: StaffPageDep):
    """One session's release mode, from its page (schedulers too, as in the API)."""
    staff = page.need(*SCHEDULERS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(ReleaseModeUpdate, {"mode": forms.text(form, "mode")})
        async with state.db.begin() as session:
            await draw_service.do_set_mode(session, hospital_id, mode=body.mode, now=state.clock.now(),
                                           staff_id=staff.staff_id, schedule_id=schedule_id)
    except GuahaoError as exc:
        if exc.status == 404:
            raise
        return await suspend.render_session(page, hospital_id, schedule_id, status=exc.status,
                                            error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/schedules/{schedule_id}?done=release_mode")
