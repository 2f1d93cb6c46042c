"""User-facing labels of catalog codes in our two languages (zh-CN first, en)."""
from __future__ import annotations

_TITLES = {
    "chief": ("主任医师", "Chief physician"),
    "associate_chief": ("副主任医师", "Associate chief physician"),
    "attending": ("主治医师", "Attending physician"),
    "resident": ("住院医师", "Resident physician"),
    "none": ("普通门诊", "General clinic"),
}
_REGISTRATION_LEVELS = {
    "general": ("普通号", "General"),
    "expert": ("专家号", "Expert"),
    "special": ("特需", "Special needs"),
}
_LEVELS = {
    "三级甲等": "Tertiary, grade A",
    "三级乙等": "Tertiary, grade B",
    "三级": "Tertiary",
    "二级甲等": "Secondary, grade A",
    "二级乙等": "Secondary, grade B",
    "二级": "Secondary",
    "一级": "Primary",
    "未定级": "Not graded",
}
_SEXES = {"M": ("男", "Male"), "F": ("女", "Female")}


def _pick(table: dict[str, tuple[str, str]], code: str, locale: str) -> str:
    pair = table.get(code)
    if pair is None:
        return code
    return pair[1] if locale == "en" else pair[0]


def title(code: str, locale: str) -> str:
    return _pick(_TITLES, code, locale)


def registration_level(code: str, locale: str) -> str:
    return _pick(_REGISTRATION_LEVELS, code, locale)


def level(code: str, locale: str) -> str:
    return _LEVELS.get(code, code) if locale == "en" else code


def sex(code: str | None, locale: str) -> str | None:
    return None if code is None else _pick(_SEXES, code, locale)


def cancel_deadline(minutes_before_visit_day: int, locale: str) -> str:
    """Online cancellation closes this many minutes before 00:00 of the visit day."""
    days_before, rest = divmod(minutes_before_visit_day, 1440)
    days = days_before + 1  # the deadline is on the day this many days before the visit
    clock = f"{(1440 - rest) // 60:02d}:{(1440 - rest) % 60:02d}"
    if locale == "en":
        when = "on the day before the visit" if days == 1 else f"{days} days before the visit"
        return f"Online cancellation until {clock} {when}"
    day = "就诊前一日" if days == 1 else f"就诊前{days}日"
    return f"{day}{clock}前可在线取消"
