"""The one role table of the back-office pages: for every route under /staff/, which hospital
roles may use it (the platform operator may use every page) and, for a form, a valid form
(a function of the test world of tests/test_staff_access_pages.py, which generates the I8 and
role checks from it; tests/test_staff_admin_pages.py reads its rows too)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.staff_web_support import ROLES

ANY = frozenset(ROLES)
WINDOW = frozenset({"front_desk", "hospital_admin"})
ADMIN = frozenset({"hospital_admin"})
SCHEDULING = frozenset({"scheduler", "hospital_admin"})
OPERATOR_ONLY: frozenset[str] = frozenset()  # the platform operator's own pages: every hospital role gets 403
PUBLIC = None  # login and logout: no session needed


@dataclass(frozen=True)
class Spec:
    roles: frozenset[str] | None
    form: Callable[[dict], dict] | None = None


def _rules(w):
    return {"hold_minutes": "15", "release_days_ahead": "7", "release_time": "08:00", "close_minutes_before_start": "0",
            "cancel_minutes_before_visit_day": "0", "slot_granularity": "half_day", "one_per_department_per_day": "on",
            "max_live_bookings_per_person": "5", "restriction_threshold": "3", "restriction_window_days": "90",
            "restriction_days": "90", "strike_cancellations": "all", "record_requirement": "none",
            "reminder_time": "18:00", "sms_to_patient_phone": "on", "release_mode": "fifo",
            "draw_window_seconds": "30", "draw_prequeue_minutes": "0", "entrance": "department"}


def _hours(w):
    return {"morning_opens": "07:30", "morning_closes": "11:30", "afternoon_opens": "13:00",
            "afternoon_closes": "17:00", "evening_opens": "18:00", "evening_closes": "21:00"}


def _doctor(w):
    return {"name": "王芳", "department_id": str(w["ids"]["department_id"]), "title": "attending",
            "registration_level": "general", "specialty": "高血压", "introduction": "", "active": "on"}


def _leave(w):
    return {"doctor_id": str(w["ids"]["doctor_id"]), "from_date": "2026-12-20", "to_date": "2026-12-21",
            "reason": "休假"}


_HOSPITAL = {"level": "三级甲等", "city": "北京市", "district": "东城区", "address": "测试路1号", "phone": "010-1234",
             "latitude": "39.91", "longitude": "116.41", "timezone": "Asia/Shanghai", "entrance": "department",
             "introduction": "", "his_mode": "local"}
_WEEK = {"from_date": "2026-11-23", "to_date": "2026-11-29"}
_H = "/staff/hospitals/{hospital_id}"
# the pages of src/guahao/web/staff/admin.py, catalog_admin.py, scheduler.py, suspend.py and
# operator.py (tests/test_staff_admin_pages.py checks its own rules against these rows)
ADMIN_PAGES: dict[tuple[str, str], Spec] = {
    ("GET", f"{_H}/rules"): Spec(ADMIN),
    ("POST", f"{_H}/rules"): Spec(ADMIN, _rules),
    ("POST", f"{_H}/rules/preview"): Spec(ADMIN, _rules),
    ("POST", f"{_H}/clinic-hours"): Spec(ADMIN, _hours),
    ("GET", f"{_H}/fees"): Spec(ADMIN),
    ("POST", f"{_H}/fees"): Spec(ADMIN, lambda w: {"general__none__reg": "15", "general__none__cons": "0",
                                                   "general__attending__reg": "15", "general__attending__cons": "0"}),
    ("GET", f"{_H}/departments"): Spec(ADMIN),
    ("POST", f"{_H}/departments"): Spec(ADMIN, lambda w: {"name": "妇科", "parent_id": "", "location": "门诊楼2层"}),
    ("GET", f"{_H}/departments/{{department_id}}"): Spec(ADMIN),
    ("POST", f"{_H}/departments/{{department_id}}"): Spec(ADMIN, lambda w: {"name": "心血管内科",
                                                                           "location": "门诊楼3层"}),
    ("GET", f"{_H}/doctors"): Spec(ADMIN),
    ("POST", f"{_H}/doctors"): Spec(ADMIN, _doctor),
    ("GET", f"{_H}/doctors/{{doctor_id}}"): Spec(ADMIN),
    ("POST", f"{_H}/doctors/{{doctor_id}}"): Spec(ADMIN, lambda w: {**_doctor(w), "name": "张伟"}),
    ("GET", f"{_H}/schedule-templates"): Spec(SCHEDULING),
    ("POST", f"{_H}/schedule-templates"):
        Spec(SCHEDULING, lambda w: {"department_id": str(w["ids"]["department_id"]),
                                    f"c_{w['ids']['doctor_id']}_0_morning_p": "10",
                                    f"c_{w['ids']['doctor_id']}_0_morning_o": "2"}),
    ("POST", f"{_H}/schedules/generate"): Spec(SCHEDULING, lambda w: dict(_WEEK)),
    ("GET", f"{_H}/schedules"): Spec(SCHEDULING),
    ("POST", f"{_H}/schedules/publish"): Spec(SCHEDULING, lambda w: dict(_WEEK)),
    ("POST", f"{_H}/schedules/{{schedule_id}}/publish"): Spec(SCHEDULING, lambda w: {}),
    ("GET", f"{_H}/schedules/{{schedule_id}}"): Spec(SCHEDULING),
    ("POST", f"{_H}/schedules/{{schedule_id}}/capacity"):
        Spec(SCHEDULING, lambda w: {"platform_capacity": "6", "onsite_capacity": "2"}),
    ("POST", f"{_H}/schedules/{{schedule_id}}/suspend/preview"): Spec(SCHEDULING, lambda w: {"reason": "医生临时出诊"}),
    ("POST", f"{_H}/schedules/{{schedule_id}}/suspend"): Spec(SCHEDULING, lambda w: {"reason": "医生临时出诊"}),
    ("POST", f"{_H}/schedules/{{schedule_id}}/resume"): Spec(SCHEDULING, lambda w: {}),
    ("GET", f"{_H}/leave"): Spec(SCHEDULING),
    ("POST", f"{_H}/leave/preview"): Spec(SCHEDULING, _leave),
    ("POST", f"{_H}/leave"): Spec(SCHEDULING, _leave),
    ("GET", "/staff/operator/hospitals"): Spec(OPERATOR_ONLY),
    ("POST", "/staff/operator/hospitals"): Spec(OPERATOR_ONLY, lambda w: {"name": "丙医院", **_HOSPITAL}),
    ("GET", "/staff/operator/hospitals/{hospital_id}"): Spec(OPERATOR_ONLY),
    ("POST", "/staff/operator/hospitals/{hospital_id}"):
        Spec(OPERATOR_ONLY, lambda w: {"name": "甲医院", "short_name": "", **_HOSPITAL, "active": "on"}),
    ("POST", "/staff/operator/hospitals/{hospital_id}/his-connection"):
        Spec(OPERATOR_ONLY, lambda w: {"his_base_url": "http://127.0.0.1:9/his", "his_platform": "guahao",
                                       "his_pool": "web", "his_key": "ab" * 16}),
    ("GET", "/staff/operator/staff"): Spec(OPERATOR_ONLY),
    ("POST", "/staff/operator/staff"):
        Spec(OPERATOR_ONLY, lambda w: {"username": "accessdesk1", "password": "a-long-password-1", "role": "front_desk",
                                       "hospital_id": str(w["ids"]["hospital_id"]), "display_name": "新人"}),
    ("GET", "/staff/operator/jobs"): Spec(OPERATOR_ONLY),
    ("POST", "/staff/operator/jobs/{message_id}/retry"): Spec(OPERATOR_ONLY, lambda w: {}),
    ("GET", "/staff/audit"): Spec(ADMIN),  # an admin sees their own hospital's entries (see the test below)
    ("GET", "/staff/operator/reconciliation"): Spec(OPERATOR_ONLY),
    ("POST", "/staff/hospitals/{hospital_id}/doctors/{doctor_id}/photo"): Spec(ADMIN, lambda w: {"remove": "1"}),
    ("POST", "/staff/hospitals/{hospital_id}/bookings/{booking_id}/visit-reason"): Spec(WINDOW, lambda w: {}),
    ("GET", "/staff/hospitals/{hospital_id}/his-drift"): Spec(ADMIN),
    ("GET", f"{_H}/schedules/{{schedule_id}}/waitlist"): Spec(ANY),  # the session's 候补 queue (read only)
    # 候补 rules and release modes (src/guahao/web/staff/release.py)
    ("GET", f"{_H}/waitlist-rules"): Spec(ADMIN),
    ("POST", f"{_H}/waitlist-rules"):
        Spec(ADMIN, lambda w: {"enabled": "on", "max_entries_per_person": "3", "offer_minutes": "30",
                               "cutoff_minutes_before_visit_day": "60", "lapse_counts_as_strike": "on",
                               "quiet_from": "22:00", "quiet_until": "07:00"}),
    ("GET", f"{_H}/release-modes"): Spec(ADMIN),
    ("POST", f"{_H}/release-modes/departments/{{department_id}}"): Spec(ADMIN, lambda w: {"mode": "fifo"}),
    ("POST", f"{_H}/schedules/{{schedule_id}}/release-mode"): Spec(SCHEDULING, lambda w: {"mode": "inherit"}),
}

PAGES: dict[tuple[str, str], Spec] = {
    ("GET", "/staff/login"): Spec(PUBLIC),
    ("POST", "/staff/login"): Spec(PUBLIC),
    ("POST", "/staff/logout"): Spec(PUBLIC),
    ("GET", "/staff/"): Spec(ANY),
    ("GET", "/staff/password"): Spec(ANY),
    ("POST", "/staff/password"): Spec(ANY, lambda w: {"current_password": "x", "new_password": "long-enough-1",
                                                      "repeat_password": "does-not-match"}),
    ("GET", "/staff/totp"): Spec(ADMIN),
    ("POST", "/staff/totp/enroll"): Spec(ADMIN, lambda w: {}),
    ("POST", "/staff/totp/confirm"): Spec(ADMIN, lambda w: {"code": "000000"}),
    ("POST", "/staff/totp/disable"): Spec(ADMIN, lambda w: {"code": "000000"}),
    ("GET", "/staff/hospitals/{hospital_id}/window"): Spec(WINDOW),
    ("POST", "/staff/hospitals/{hospital_id}/window/search"): Spec(WINDOW, lambda w: {"q": w["code"]}),
    ("GET", "/staff/hospitals/{hospital_id}/bookings/{booking_id}"): Spec(WINDOW),
    ("POST", "/staff/hospitals/{hospital_id}/bookings/{booking_id}/reveal"): Spec(WINDOW, lambda w: {}),
    ("POST", "/staff/hospitals/{hospital_id}/bookings/{booking_id}/check-in"):
        Spec(WINDOW, lambda w: {"id_number": "110101199003070011"}),
    ("POST", "/staff/hospitals/{hospital_id}/bookings/{booking_id}/complete"): Spec(WINDOW, lambda w: {}),
    ("POST", "/staff/hospitals/{hospital_id}/bookings/{booking_id}/void"): Spec(WINDOW, lambda w: {"reason": "窗口退号"}),
    ("GET", "/staff/hospitals/{hospital_id}/walk-in"): Spec(WINDOW),
    ("POST", "/staff/hospitals/{hospital_id}/walk-in"):
        Spec(WINDOW, lambda w: {"schedule_id": str(w["schedule_id"]), "name": "现场患者", "id_type": "resident_id",
                                "id_number": "110101199003070011", "phone": "13800138000"}),
    ("GET", "/staff/hospitals/{hospital_id}/reports"): Spec(ADMIN),
    ("GET", "/staff/hospitals/{hospital_id}/restrictions"): Spec(frozenset({"hospital_admin", "front_desk"})),
    ("POST", "/staff/hospitals/{hospital_id}/restrictions/{restriction_id}/lift"):
        Spec(ADMIN, lambda w: {"reason": "核实后解除"}),
    **ADMIN_PAGES,
}
