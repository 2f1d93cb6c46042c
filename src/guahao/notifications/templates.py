"""SMS templates: a code, its parameters, and the text in zh-CN and English.

Mainland SMS gateways send only pre-approved templates: we pass the template's gateway id
and its parameters, the gateway fills them in (and adds our signature 【...】). The texts
here are the approved wording, used by the console provider to show what the patient reads
and by tests. An English text is a template of its own at the gateway, hence its own id.

Amounts always name both parts of the fee, 挂号费 and 诊查费 (`core.fees`).
Parameters carry no ID number and no phone number; the patient's name is always masked
(`王小明` -> `王*`), so a rendered text is safe to print in development.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from guahao.core import fees

LOCALES = ("zh-CN", "en")


@dataclass(frozen=True)
class Template:
    code: str
    params: tuple[str, ...]
    zh: str
    en: str

    def text(self, locale: str) -> str:
        return self.en if locale == "en" else self.zh


_ALL = (
    Template(
        "booking_confirmed",
        ("patient", "hospital", "department", "doctor", "time", "visit_no", "code", "location"),
        "{patient}预约成功：{hospital} {department} {doctor}，{time}，就诊序号{visit_no}，取号码{code}。"
        "请按时到{location}签到取号。",
        "Booking confirmed for {patient}: {hospital}, {department}, {doctor}, {time}, visit no. {visit_no}, "
        "booking code {code}. Please check in at {location} on time.",
    ),
    Template(
        # the hospital's 建档 rule is create_at_hospital: the same message, and where to register
        "booking_confirmed_register",
        ("patient", "hospital", "department", "doctor", "time", "visit_no", "code", "location"),
        "{patient}预约成功：{hospital} {department} {doctor}，{time}，就诊序号{visit_no}，取号码{code}。"
        "就诊前请先到医院窗口或自助机办理建档（就诊卡），再到{location}签到取号。",
        "Booking confirmed for {patient}: {hospital}, {department}, {doctor}, {time}, visit no. {visit_no}, "
        "booking code {code}. Before the visit, please register at the hospital's window or self-service "
        "machine (to get a visit card), then check in at {location}.",
    ),
    Template(
        "hold_expiring",
        ("patient", "hospital", "department", "time", "deadline"),
        "您为{patient}锁定的{hospital} {department} {time}号源将于{deadline}释放，请尽快完成支付。",
        "The slot held for {patient} at {hospital}, {department}, {time} will be released at {deadline}. "
        "Please complete the payment before then.",
    ),
    Template(
        "booking_cancelled",
        ("patient", "hospital", "department", "time", "refund"),
        "您为{patient}预约的{hospital} {department} {time}已取消，{refund}。",
        "The booking for {patient} at {hospital}, {department}, {time} has been cancelled; {refund}.",
    ),
    Template(
        "booking_expired",
        ("patient", "hospital", "department", "time"),
        "您为{patient}锁定的{hospital} {department} {time}号源因未在规定时间内支付已释放，如需就诊请重新预约。",
        "The slot held for {patient} at {hospital}, {department}, {time} was released because the payment "
        "was not completed in time. Please book again if you still need the visit.",
    ),
    Template(
        "booking_revoked",
        ("patient", "hospital", "department", "doctor", "time", "refund"),
        "因医院停诊，您为{patient}预约的{hospital} {department} {doctor} {time}已取消，{refund}。"
        "给您带来不便，敬请谅解。",
        "The hospital has suspended the clinic: the booking for {patient} at {hospital}, {department}, {doctor}, "
        "{time} has been cancelled; {refund}. We apologise for the inconvenience.",
    ),
    Template(
        "reminder",
        ("patient", "hospital", "department", "doctor", "time", "visit_no", "location"),
        "就诊提醒：{patient}明天在{hospital} {department} {doctor}就诊，{time}，就诊序号{visit_no}。"
        "请按时到{location}签到取号。",
        "Reminder: {patient} has a visit tomorrow at {hospital}, {department}, {doctor}, {time}, "
        "visit no. {visit_no}. Please check in at {location} on time.",
    ),
    Template(
        "restriction_applied",
        ("patient", "hospital", "until"),
        "因多次取消预约或爽约，{patient}在{hospital}的网上预约已暂停至{until}，如有疑问请联系医院。",
        "Because of repeated cancellations or missed visits, online booking for {patient} at {hospital} "
        "is suspended until {until}. Please contact the hospital with any questions.",
    ),
    Template(
        "payment_late_refunded",
        ("patient", "hospital", "department", "time", "fees"),
        "您为{patient}支付的{hospital} {department} {time}的费用（{fees}）到账时锁号已超时，预约未成功，"
        "费用将原路退回。",
        "The payment ({fees}) for {patient} at {hospital}, {department}, {time} arrived after the hold "
        "had expired, so no booking was made; it will be refunded to the original payment method.",
    ),
    Template(
        "waitlist_offer",
        ("patient", "hospital", "department", "doctor", "time", "deadline", "fees"),
        "候补成功：已为{patient}锁定{hospital} {department} {doctor} {time}的号源，请在{deadline}前支付（{fees}），"
        "逾期号源将顺延给下一位候补者。",
        "Waitlist success: a slot is held for {patient} at {hospital}, {department}, {doctor}, {time}. Please pay "
        "({fees}) by {deadline}; after that it goes to the next person on the waitlist.",
    ),
    Template(
        "waitlist_skipped",
        ("patient", "hospital", "department", "time", "reason"),
        "{patient}在{hospital} {department} {time}的候补轮到时未能分配号源（{reason}），候补已结束。",
        "When the turn of {patient} on the waitlist for {hospital}, {department}, {time} came, no slot could be "
        "given ({reason}); the waitlist entry has ended.",
    ),
    Template(
        "waitlist_closed",
        ("patient", "hospital", "department", "time"),
        "{patient}在{hospital} {department} {time}的候补已截止，未能候补成功，如需就诊请选择其他日期。",
        "The waitlist of {patient} for {hospital}, {department}, {time} has closed without a slot. Please choose "
        "another day if you still need a visit.",
    ),
    Template(
        # 停诊: the queue is paused, not ended (waitlist.pause)
        "waitlist_paused",
        ("patient", "hospital", "department", "doctor", "time"),
        "因医院停诊，{patient}在{hospital} {department} {doctor} {time}的候补已暂停，排队位置保留；"
        "如恢复出诊，将按原顺序继续候补。",
        "The hospital has suspended the clinic: the waitlist of {patient} for {hospital}, {department}, {doctor}, "
        "{time} is paused and keeps its place. If the clinic resumes, the waitlist continues in the same order.",
    ),
    Template(
        "waitlist_resumed",
        ("patient", "hospital", "department", "doctor", "time", "ahead"),
        "{hospital} {department} {doctor} {time}已恢复出诊，{patient}的候补继续，前面还有{ahead}人。",
        "The clinic at {hospital}, {department}, {doctor}, {time} has resumed: the waitlist of {patient} "
        "continues, with {ahead} people ahead.",
    ),
)
# 摇号放号 (guahao.draw): one result message per entry
_DRAW = (
    Template(
        "draw_won",
        ("patient", "hospital", "department", "doctor", "time", "deadline"),
        "摇号结果：{patient}在{hospital} {department} {doctor} {time}的摇号中签，号源已为您锁定，"
        "请在{deadline}前完成支付，逾期自动释放。",
        "Draw result: {patient} was drawn for {hospital}, {department}, {doctor}, {time}. The number is held "
        "for you; please pay before {deadline} or it will be released.",
    ),
    Template(
        "draw_not_won",
        ("patient", "hospital", "department", "doctor", "time"),
        "摇号结果：{patient}在{hospital} {department} {doctor} {time}的摇号未中签。摇号过程可在号源页面核验。",
        "Draw result: {patient} was not drawn for {hospital}, {department}, {doctor}, {time}. "
        "The draw can be verified on the clinic's page.",
    ),
    Template(
        "draw_skipped",
        ("patient", "hospital", "department", "doctor", "time", "reason"),
        "摇号结果：{patient}在{hospital} {department} {doctor} {time}的摇号中签，但因{reason}未能锁号，"
        "号源已按摇号顺序给下一位。",
        "Draw result: {patient} was drawn for {hospital}, {department}, {doctor}, {time}, but could not be "
        "given the number ({reason}); it went to the next in draw order.",
    ),
)
TEMPLATES: dict[str, Template] = {t.code: t for t in _ALL + _DRAW}


def gateway_id(code: str, locale: str) -> str:
    """The template id registered at the gateway: one per approved text, so one per language."""
    if code not in TEMPLATES:
        raise KeyError(f"unknown SMS template {code!r}")
    return f"{code}_en" if locale == "en" else code


def pick_params(code: str, available: dict[str, str]) -> dict[str, str]:
    """Exactly the template's parameters, in its order (gateways refuse unknown ones)."""
    template = TEMPLATES[code]
    missing = [p for p in template.params if p not in available]
    if missing:
        raise KeyError(f"template {code} lacks parameters {missing}")
    return {p: str(available[p]) for p in template.params}


def render(code: str, params: dict[str, str], locale: str) -> str:
    return TEMPLATES[code].text(locale).format_map(params)


# --- parameter values in the reader's language ----------------------------------------------

_PERIODS = {"morning": ("上午", "morning"), "afternoon": ("下午", "afternoon"),
            "evening": ("晚上", "evening"), "all_day": ("全天", "all day")}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _en(locale: str) -> bool:
    return locale == "en"


def visit_time(starts_at: dt.datetime, ends_at: dt.datetime, period: str, zone: dt.tzinfo, locale: str) -> str:
    """`11月21日 上午 08:00-08:30` / `21 Nov, morning, 08:00-08:30`, in the hospital's zone."""
    start, end = starts_at.astimezone(zone), ends_at.astimezone(zone)
    zh_period, en_period = _PERIODS.get(period, (period, period))
    band = f"{start:%H:%M}-{end:%H:%M}"
    if _en(locale):
        return f"{start.day} {_MONTHS_EN[start.month - 1]}, {en_period}, {band}"
    return f"{start.month}月{start.day}日 {zh_period} {band}"


def clock_time(instant: dt.datetime, zone: dt.tzinfo) -> str:
    return f"{instant.astimezone(zone):%H:%M}"


def date_time(instant: dt.datetime, zone: dt.tzinfo, locale: str) -> str:
    """`2026年12月19日 10:00` / `19 Dec 2026, 10:00`."""
    local = instant.astimezone(zone)
    if _en(locale):
        return f"{local.day} {_MONTHS_EN[local.month - 1]} {local.year}, {local:%H:%M}"
    return f"{local.year}年{local.month}月{local.day}日 {local:%H:%M}"


def fee_text(registration_fee: int, consultation_fee: int, locale: str) -> str:
    """Both parts and the total: `挂号费 ¥5.00 + 诊查费 ¥20.00，合计 ¥25.00`."""
    return fees.breakdown(registration_fee, consultation_fee, "en" if _en(locale) else "zh-CN")


def refund_status(paid: bool, locale: str, fee: str = "") -> str:
    """`fee`: the paid amount as `fee_text` words it, named in the refund when given."""
    if paid:
        if _en(locale):
            return f"the fees ({fee}) will be refunded to the original payment method" if fee else \
                "the fee will be refunded to the original payment method"
        return f"费用（{fee}）将原路退回" if fee else "费用将原路退回"
    return "no fee was charged" if _en(locale) else "未产生费用"


def general_clinic(locale: str) -> str:
    """The 'doctor' of a department's general clinic, which has none."""
    return "General clinic" if _en(locale) else "普通门诊"


def default_location(locale: str) -> str:
    return "the department's triage desk" if _en(locale) else "科室分诊台"
