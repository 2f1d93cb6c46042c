"""The hospital admin's clinic hours and the rules preview (what patients will read)."""
from __future__ import annotations

import dataclasses

from fastapi import APIRouter

from guahao.catalog import rules as hospital_rules
from guahao.catalog import rules_text
from guahao.catalog.schemas import ClinicHours, ClinicPeriod, HospitalRulesUpdate, RulesText
from guahao.core.deps import ClockDep, CurrentStaff, Db
from guahao.staff import service as staff_service

router = APIRouter(prefix="/api/v1/staff", tags=["staff"])


def _hours_read(rules: hospital_rules.Rules) -> ClinicHours:
    hours = rules.hours
    return ClinicHours(**{p: ClinicPeriod(opens=hours[p][0], closes=hours[p][1])
                          for p in hospital_rules.CLINIC_PERIODS})


@router.get("/hospitals/{hospital_id}/clinic-hours", response_model=ClinicHours)
async def read_clinic_hours(hospital_id: int, staff: CurrentStaff, db: Db) -> ClinicHours:
    """The hospital's clinic hours per period (morning, afternoon, evening)."""
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        return _hours_read(await hospital_rules.get_rules(session, hospital_id))


@router.put("/hospitals/{hospital_id}/clinic-hours", response_model=ClinicHours)
async def replace_clinic_hours(hospital_id: int, body: ClinicHours, staff: CurrentStaff, db: Db,
                               clock: ClockDep) -> ClinicHours:
    """Set the hospital's clinic hours (audited). Schedules generated afterwards use them;
    schedules that exist keep their times."""
    staff.ensure_hospital(hospital_id)
    staff.require(staff_service.HOSPITAL_ADMIN)
    hours = {p: (getattr(body, p).opens, getattr(body, p).closes) for p in hospital_rules.CLINIC_PERIODS}
    async with db.begin() as session:
        rules = await hospital_rules.do_update_clinic_hours(session, hospital_id, hours, now=clock.now(),
                                                            staff_id=staff.staff_id)
    return _hours_read(rules)


@router.post("/hospitals/{hospital_id}/rules/preview", response_model=RulesText, response_model_by_alias=True)
async def preview_rules(hospital_id: int, staff: CurrentStaff, db: Db,
                        body: HospitalRulesUpdate | None = None) -> RulesText:
    """The rules in the words patients read, in zh-CN and en: the hospital's current rules,
    or (with a body) the rules being edited, before saving them. Changes nothing."""
    staff.ensure_hospital(hospital_id)
    async with db.read() as session:
        rules = await hospital_rules.get_rules(session, hospital_id)
    if body is not None:
        rules = dataclasses.replace(rules, **body.model_dump())
    return RulesText(zh_cn=rules_text.patient_text(rules, "zh-CN"), en=rules_text.patient_text(rules, "en"))
