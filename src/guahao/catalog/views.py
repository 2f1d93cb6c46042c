"""ORM rows -> response schemas, with labels in the caller's language."""
from __future__ import annotations

from typing import TYPE_CHECKING

from guahao.catalog import labels
from guahao.catalog.models import Department, Doctor, FeeRule, Hospital
from guahao.catalog.schemas import (
    DepartmentNode,
    DepartmentRead,
    DepartmentRestrictions,
    DoctorDetail,
    DoctorRead,
    FeeRuleRead,
    Fees,
    HospitalDetail,
    HospitalRead,
    HospitalStaffRead,
    RulesSummary,
)
from guahao.core import localtime
from guahao.core.localtime import localize

if TYPE_CHECKING:  # the one rules type, owned by catalog.rules
    from guahao.catalog.rules import Rules


def _hospital_fields(h: Hospital, locale: str) -> dict:
    return dict(id=h.id, name=h.name, short_name=h.short_name, level=h.level, level_label=labels.level(h.level, locale),
                city=h.city, district=h.district, address=h.address, phone=h.phone, latitude=h.latitude,
                longitude=h.longitude, entrance=h.entrance)


def hospital_read(h: Hospital, locale: str, distance_km: float | None = None) -> HospitalRead:
    distance = None if distance_km is None else round(distance_km, 2)
    return HospitalRead(**_hospital_fields(h, locale), distance_km=distance)


def rules_summary(r: Rules, locale: str) -> RulesSummary:
    return RulesSummary(
        hold_minutes=r.hold_minutes, release_days_ahead=r.release_days_ahead,
        release_time=r.release_time.strftime("%H:%M"), close_minutes_before_start=r.close_minutes_before_start,
        cancel_minutes_before_visit_day=r.cancel_minutes_before_visit_day,
        cancel_deadline=labels.cancel_deadline(r.cancel_minutes_before_visit_day, locale),
        slot_granularity=r.slot_granularity, record_requirement=r.record_requirement,
        verification_required=r.verification_required)


def hospital_detail(h: Hospital, rules: Rules | None, locale: str) -> HospitalDetail:
    return HospitalDetail(**_hospital_fields(h, locale), introduction=h.introduction, timezone=h.timezone,
                          rules=None if rules is None else rules_summary(rules, locale))


def hospital_staff_read(h: Hospital, locale: str) -> HospitalStaffRead:
    return localize(HospitalStaffRead(**_hospital_fields(h, locale), introduction=h.introduction,
                                      timezone=h.timezone, his_mode=h.his_mode, active=h.active,
                                      created_at=h.created_at), localtime.zone(h.timezone))


def department_node(d: Department, children: list[Department] = ()) -> DepartmentNode:
    return DepartmentNode(id=d.id, name=d.name, parent_id=d.parent_id, sort_order=d.sort_order, location=d.location,
                          children=[department_node(c) for c in children])


def department_read(d: Department, hospital: Hospital, parent: Department | None, children: list[Department],
                    locale: str) -> DepartmentRead:
    restrictions = DepartmentRestrictions(min_age=d.min_age, max_age=d.max_age, allowed_sex=d.allowed_sex,
                                          allowed_sex_label=labels.sex(d.allowed_sex, locale))
    return DepartmentRead(id=d.id, hospital_id=d.hospital_id, hospital_name=hospital.name, parent_id=d.parent_id,
                          parent_name=parent.name if parent else None, name=d.name, introduction=d.introduction,
                          location=d.location, sort_order=d.sort_order, restrictions=restrictions,
                          children=[department_node(c) for c in children])


def fees(rule: FeeRule | None) -> Fees | None:
    if rule is None:
        return None
    return Fees(registration_fee=rule.registration_fee, consultation_fee=rule.consultation_fee,
                total=rule.registration_fee + rule.consultation_fee)


def _doctor_fields(d: Doctor, department_name: str, hospital_name: str, fee: FeeRule | None, locale: str) -> dict:
    return dict(id=d.id, name=d.name, title=d.title, title_label=labels.title(d.title, locale),
                registration_level=d.registration_level,
                registration_level_label=labels.registration_level(d.registration_level, locale),
                specialty=d.specialty, department_id=d.department_id, department_name=department_name,
                hospital_id=d.hospital_id, hospital_name=hospital_name, fees=fees(fee))


def doctor_read(d: Doctor, department_name: str, hospital_name: str, fee: FeeRule | None, locale: str) -> DoctorRead:
    return DoctorRead(**_doctor_fields(d, department_name, hospital_name, fee, locale))


def doctor_detail(d: Doctor, department_name: str, hospital_name: str, fee: FeeRule | None,
                  locale: str) -> DoctorDetail:
    return DoctorDetail(**_doctor_fields(d, department_name, hospital_name, fee, locale),
                        introduction=d.introduction, active=d.active)


def fee_rule_read(r: FeeRule, locale: str) -> FeeRuleRead:
    return FeeRuleRead(registration_level=r.registration_level, title=r.title,
                       title_label=labels.title(r.title, locale), registration_fee=r.registration_fee,
                       consultation_fee=r.consultation_fee, total=r.registration_fee + r.consultation_fee)
