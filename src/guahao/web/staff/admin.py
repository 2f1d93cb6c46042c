"""The hospital admin's pages: the booking rules with a live preview of what patients will
read, the clinic hours per period, and the fee table (挂号费 and 诊查费 by registration level
and title).

Every save calls the function the JSON route calls (catalog.rules.do_update_rules,
do_update_clinic_hours, catalog.staff_actions), so the audit rows are the same.
"""
from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from guahao.catalog import rules as hospital_rules
from guahao.catalog import rules_text, staff_actions
from guahao.catalog import service as catalog_service
from guahao.catalog.schemas import ClinicPeriod, FeeRuleIn, HospitalRulesUpdate, HospitalUpdate
from guahao.core.errors import GuahaoError
from guahao.web.staff import forms
from guahao.web.staff.base import ADMINS, NAV, NavItem, StaffPageDep, _, form_of, parse, redirect, render

router = APIRouter(prefix="/staff", include_in_schema=False)

NAV.extend([
    NavItem("/staff/hospitals/{hospital_id}/rules", _("Booking rules"), ADMINS),
    NavItem("/staff/hospitals/{hospital_id}/fees", _("Fees"), ADMINS),
    NavItem("/staff/hospitals/{hospital_id}/departments", _("Departments"), ADMINS),
    NavItem("/staff/hospitals/{hospital_id}/doctors", _("Doctors"), ADMINS),
])

# (field, label, kind, help); kind: int, bool, time or a tuple of (value, label) choices
RULE_FIELDS = [
    ("hold_minutes", _("Minutes a booking waits for payment"), "int", _("5 to 30 minutes.")),
    ("release_days_ahead", _("Days ahead slots are released"), "int", _("1 to 90 days.")),
    ("release_time", _("Release time"), "time", _("Time of day new days open, hospital time.")),
    ("close_minutes_before_start", _("Booking closes minutes before the session"), "int",
     _("0 = at the start of the session.")),
    ("cancel_minutes_before_visit_day", _("Online cancellation deadline (minutes before the visit day)"), "int",
     _("0 = until 24:00 of the day before the visit.")),
    ("slot_granularity", _("Booking granularity"),
     (("day", _("By day")), ("half_day", _("By half day")), ("time_band", _("By time band"))), ""),
    ("one_per_department_per_day", _("One booking per department per day"), "bool", ""),
    ("max_live_bookings_per_person", _("Most live bookings per person"), "int", _("1 to 20.")),
    ("restriction_threshold", _("Missed or cancelled visits that restrict"), "int", _("1 to 100.")),
    ("restriction_window_days", _("Counted over days"), "int", _("1 to 365 days.")),
    ("restriction_days", _("Restriction lasts days"), "int", _("1 to 365 days.")),
    ("strike_cancellations", _("Cancellations that count"),
     (("all", _("All cancellations")), ("paid_only", _("Paid bookings only")), ("none", _("None"))), ""),
    ("record_requirement", _("Patient record (建档)"),
     (("none", _("Not needed")), ("existing_record_required", _("An existing hospital record is required")),
      ("auto_create_in_his", _("Created in the HIS automatically")),
      ("create_at_hospital", _("Created at the hospital on the visit day"))), ""),
    ("verification_required", _("Real-name verification required"), "bool", ""),
    ("reminder_time", _("Reminder time (the day before)"), "time", ""),
    ("sms_to_patient_phone", _("SMS also to the patient's own phone"), "bool", ""),
    ("release_mode", _("How numbers are released (放号)"),
     (("fifo", _("First come, first served")), ("draw", _("By draw (摇号)"))),
     _("By draw: patients enter during a window after the release time; a verifiable draw then allocates the numbers. Departments and schedules may differ.")),
    ("draw_window_seconds", _("Draw: entry window (seconds after release)"), "int", _("10 to 60 seconds.")),
    ("draw_prequeue_minutes", _("Draw: entries open minutes before release"), "int", _("0 (none) to 60 minutes.")),
]
ENTRANCES = (("department", _("Department tree first")), ("registration_level", _("普通号 / 专家号 first")))
PERIOD_LABELS = {"morning": _("Morning"), "afternoon": _("Afternoon"), "evening": _("Evening")}
FEE_TITLES = ("none", "chief", "associate_chief", "attending", "resident")
FEE_LEVELS = ("general", "expert", "special")


def _rules_values(form: dict[str, str]) -> dict:
    values = {}
    for name, _label, kind, _help in RULE_FIELDS:
        if kind == "int":
            values[name] = forms.integer(form, name)
        elif kind == "bool":
            values[name] = forms.checked(form, name)
        else:
            values[name] = forms.text(form, name)
    return values


def _current(rules: hospital_rules.Rules) -> dict:
    values = {name: getattr(rules, name) for name, *_rest in RULE_FIELDS}
    for name in ("release_time", "reminder_time"):
        values[name] = values[name].strftime("%H:%M")
    return values


async def _rules_page(page, hospital_id: int, *, values: dict | None = None, status: int = 200, **extra):
    async with page.request.app.state.db.read() as session:
        rules = await hospital_rules.get_rules(session, hospital_id)
        hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
    shown = values or {**_current(rules), "entrance": hospital.entrance}
    hours = rules.hours
    return render(page, "staff/admin/rules.html", status=status, fields=RULE_FIELDS, values=shown,
                  entrances=ENTRANCES, hours={p: hours[p] for p in PERIOD_LABELS}, period_labels=PERIOD_LABELS,
                  preview=_preview_lines(rules, page.locale), hospital=hospital, **extra)


def _preview_lines(rules: hospital_rules.Rules, locale: str) -> list[str]:
    return rules_text.patient_text(rules, "en" if locale == "en" else "zh-CN")


@router.get("/hospitals/{hospital_id}/rules")
async def rules_form(hospital_id: int, page: StaffPageDep, saved: int = 0, hours_saved: int = 0):
    page.need(*ADMINS, hospital_id=hospital_id)
    notice = (page._("The rules were saved.") if saved else
              page._("The clinic hours were saved.") if hours_saved else None)
    return await _rules_page(page, hospital_id, notice=notice)


@router.post("/hospitals/{hospital_id}/rules/preview")
async def rules_preview(hospital_id: int, page: StaffPageDep):
    """The htmx fragment under the form: the edited rules as patients would read them
    (changes nothing; a value out of range says which field)."""
    page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    async with page.request.app.state.db.read() as session:
        rules = await hospital_rules.get_rules(session, hospital_id)
    try:
        body = parse(HospitalRulesUpdate, _rules_values(form))
    except GuahaoError as exc:
        return render(page, "staff/admin/_rules_preview.html", error=exc.message(page.locale), preview=[])
    edited = dataclasses.replace(rules, **body.model_dump())
    return render(page, "staff/admin/_rules_preview.html", preview=_preview_lines(edited, page.locale))


@router.post("/hospitals/{hospital_id}/rules")
async def rules_save(hospital_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        body = parse(HospitalRulesUpdate, _rules_values(form))
        entrance = forms.text(form, "entrance")
        async with state.db.begin() as session:
            await hospital_rules.do_update_rules(session, hospital_id, body, now=state.clock.now(),
                                                 staff_id=staff.staff_id)
            hospital = await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
            if entrance and entrance != hospital.entrance:
                await staff_actions.do_update_hospital(session, hospital_id, parse(HospitalUpdate, {"entrance": entrance}),
                                                       staff_id=staff.staff_id, now=state.clock.now())
    except GuahaoError as exc:
        return await _rules_page(page, hospital_id, values=dict(form), status=exc.status,
                                 error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/rules?saved=1")


@router.post("/hospitals/{hospital_id}/clinic-hours")
async def hours_save(hospital_id: int, page: StaffPageDep):
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        hours = {}
        for period in hospital_rules.CLINIC_PERIODS:
            opens, closes = (parse(_ClockPair, {"opens": form.get(f"{period}_opens", ""),
                                                "closes": form.get(f"{period}_closes", "")}).pair())
            hours[period] = (opens, closes)
        async with state.db.begin() as session:
            await hospital_rules.do_update_clinic_hours(session, hospital_id, hours, now=state.clock.now(),
                                                        staff_id=staff.staff_id)
    except GuahaoError as exc:
        return await _rules_page(page, hospital_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/rules?hours_saved=1")


class _ClockPair(ClinicPeriod):
    def pair(self):
        return self.opens, self.closes


# --- fees -------------------------------------------------------------------------------------

async def _fees_page(page, hospital_id: int, *, status: int = 200, **extra):
    async with page.request.app.state.db.read() as session:
        await catalog_service.get_hospital_or_raise(session, hospital_id, include_inactive=True)
        table = await catalog_service.fee_table(session, hospital_id)
    return render(page, "staff/admin/fees.html", status=status, table=table, levels=FEE_LEVELS, titles=FEE_TITLES,
                  **extra)


@router.get("/hospitals/{hospital_id}/fees")
async def fees_form(hospital_id: int, page: StaffPageDep, saved: int = 0):
    page.need(*ADMINS, hospital_id=hospital_id)
    return await _fees_page(page, hospital_id, notice=page._("The fee table was saved.") if saved else None)


@router.post("/hospitals/{hospital_id}/fees")
async def fees_save(hospital_id: int, page: StaffPageDep):
    """The whole table is replaced; a row left blank is not priced (those clinics cannot be
    scheduled until it is)."""
    staff = page.need(*ADMINS, hospital_id=hospital_id)
    form = await form_of(page)
    state = page.request.app.state
    try:
        rows = []
        for level in FEE_LEVELS:
            for title in FEE_TITLES:
                key = f"{level}__{title}"
                if not form.get(f"{key}__reg", "").strip() and not form.get(f"{key}__cons", "").strip():
                    continue
                rows.append(parse(FeeRuleIn, {"registration_level": level, "title": title,
                                              "registration_fee": forms.yuan_to_fen(form, f"{key}__reg"),
                                              "consultation_fee": forms.yuan_to_fen(form, f"{key}__cons")}))
        async with state.db.begin() as session:
            await staff_actions.do_set_fees(session, hospital_id, rows, staff_id=staff.staff_id,
                                            now=state.clock.now())
    except GuahaoError as exc:
        return await _fees_page(page, hospital_id, status=exc.status, error=exc.message(page.locale))
    return redirect(page, f"/staff/hospitals/{hospital_id}/fees?saved=1")
