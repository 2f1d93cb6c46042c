"""A hospital's rules in the plain words patients read (zh-CN first, en), one sentence each.

The back office shows this text next to the rules form as a preview (before saving, for the
values being edited), so an admin sees what a setting means to a patient.
"""
from __future__ import annotations

from guahao.catalog import labels
from guahao.catalog.rules import Rules

_PERIODS = (("morning", "上午", "morning"), ("afternoon", "下午", "afternoon"), ("evening", "晚上", "evening"))
_RECORD = {
    "existing_record_required": ("需已在本院建档(持有本院就诊卡)方可在线预约。",
                                 "You need an existing medical record (patient card) at this hospital to book online."),
    "auto_create_in_his": ("首次预约时将自动在本院建档。",
                           "A medical record is created at the hospital automatically with your first booking."),
    "create_at_hospital": ("首次就诊前请先到医院窗口办理建档。",
                           "Before your first visit, register for a medical record at the hospital's window."),
}
_STRIKES = {
    "all": ("取消预约或爽约", "cancellations or missed visits"),
    "paid_only": ("取消已支付的预约或爽约", "cancellations of paid bookings or missed visits"),
    "none": ("爽约", "missed visits"),
}


def _hhmm(t) -> str:
    return t.strftime("%H:%M")


def _hours(rules: Rules, en: bool) -> str:
    hours = rules.hours
    if en:
        return "Clinic hours: " + ", ".join(f"{name} {_hhmm(hours[p][0])}-{_hhmm(hours[p][1])}"
                                             for p, _, name in _PERIODS) + "."
    return "门诊时间:" + ",".join(f"{name}{_hhmm(hours[p][0])}-{_hhmm(hours[p][1])}" for p, name, _ in _PERIODS) + "。"


def patient_text(rules: Rules, locale: str) -> list[str]:
    """The rules as sentences for patients, in `locale` ("en" or zh-CN)."""
    en = locale == "en"
    lines = [_hours(rules, en)]
    release = _hhmm(rules.release_time)
    lines.append(f"Slots open {rules.release_days_ahead} days ahead at {release}." if en
                 else f"号源提前{rules.release_days_ahead}天于{release}开放预约。")
    m = rules.close_minutes_before_start
    if en:
        lines.append("Online booking closes when the clinic period starts." if m == 0
                     else f"Online booking closes {m} minutes before the clinic period starts.")
    else:
        lines.append("线上预约在就诊时段开始时截止。" if m == 0 else f"就诊时段开始前{m}分钟停止线上预约。")
    if rules.release_mode == "draw":
        w = rules.draw_window_seconds
        lines.append(f"New slots are released by draw: entries are taken for {w} seconds from the release time, "
                     "and when you enter in that time does not matter." if en
                     else f"新号源以摇号方式放号:放号后{w}秒内均可登记,登记早晚不影响结果。")
    lines.append(f"Pay within {rules.hold_minutes} minutes of booking, or the slot is released." if en
                 else f"预约后请在{rules.hold_minutes}分钟内完成支付,超时号源将自动释放。")
    deadline = labels.cancel_deadline(rules.cancel_minutes_before_visit_day, locale)
    lines.append(f"{deadline}; no online cancellation on the day of the visit." if en
                 else f"{deadline},就诊当天不能在线取消。")
    if rules.one_per_department_per_day:
        lines.append("One booking per patient per department per day." if en
                     else "同一就诊人每天在同一科室限约一个号。")
    n = rules.max_live_bookings_per_person
    lines.append(f"A patient may hold at most {n} active bookings at this hospital." if en
                 else f"每位就诊人在本院最多同时有{n}个有效预约。")
    zh_what, en_what = _STRIKES.get(rules.strike_cancellations, _STRIKES["all"])
    t, w, d = rules.restriction_threshold, rules.restriction_window_days, rules.restriction_days
    lines.append(f"{t} {en_what} within {w} days bar online booking here for {d} days." if en
                 else f"{w}天内{zh_what}累计{t}次,将在{d}天内不能在线预约本院。")
    record = _RECORD.get(rules.record_requirement)
    if record:
        lines.append(record[1] if en else record[0])
    if rules.verification_required:
        lines.append("Patients must pass the real-name (face) check before their first booking." if en
                     else "首次预约前,就诊人需完成实名认证(人脸识别)。")
    return lines
