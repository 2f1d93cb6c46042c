"""Identity document numbers: GB 11643-1999 resident IDs and the other documents we accept.

We write our own GB 11643 check instead of using python-stdnum's `cn.ric`: stdnum validates
the 6-digit county (address) code against a table of codes with their dates of validity, and
refuses an ID whose county was merged or renamed (e.g. 512501, a Sichuan county code retired
in the 1990s). People keep their number for life when the county code is retired, so that
check refuses real patients. We check only what stays true for a number once issued: the
province code, the birth date and the ISO 7064 MOD 11-2 check character.

Every invalid input raises `InvalidIdNumber` (and nothing else, for any str), whose `reason`
tells the user what to fix. Messages never echo the number back.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from guahao.core.errors import GuahaoError

# First two digits: provinces and autonomous regions (GB/T 2260), 71 Taiwan; 81/82/83 are the
# residence permits for Hong Kong, Macau and Taiwan residents (港澳台居民居住证, 2018), which
# use the resident-ID layout.
PROVINCE_CODES = frozenset(
    [11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
     50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83]
)
EARLIEST_BIRTH_YEAR = 1880
_WEIGHTS = [pow(2, 17 - i, 11) for i in range(17)]  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
_CHECK_CHARS = "10X98765432"  # indexed by (weighted sum mod 11)
_DIGITS = frozenset("0123456789")
# Chinese IMEs often produce full-width forms; translate those (and only those) to ASCII.
_FULLWIDTH = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)},
                            "Ｘ": "X", "ｘ": "x", "（": "(", "）": ")"})

_PASSPORT_RE = re.compile(r"[A-Z0-9]{5,17}", re.ASCII)
# 港澳居民来往内地通行证 (回乡证): H (Hong Kong) or M (Macau), then the 8-digit card number
# (card form since 2013) or the older 10 digits (8-digit lifelong number + 2-digit issue count).
_HK_MACAU_RE = re.compile(r"[HM](\d{8}|\d{10})", re.ASCII)
# 台湾居民来往大陆通行证 (台胞证): since 2008-09-25 the number is the 8-digit lifelong number
# (一人一号、终身不变). The 1992 format appended a 2-digit issue count and, for permits issued
# in Hong Kong/Macau, an issuing-office code in brackets, e.g. 1234567801(B). Both old forms
# are accepted and reduced to the lifelong number, which is what identifies the person.
_TAIWAN_RE = re.compile(r"(\d{8})(?:\d{2}(?:\([A-Z0-9]\))?)?", re.ASCII)

_REASONS: dict[str, tuple[str, str]] = {
    "empty": ("请填写证件号码。", "Enter the ID number."),
    "length": ("身份证号应为18位,请核对后重新输入。",
               "A resident ID number has 18 characters; check it and enter it again."),
    "characters": ("身份证号前17位应为数字,最后一位为数字或X,请核对后重新输入。",
                   "A resident ID number is 17 digits followed by a digit or X; check it and enter it again."),
    "province": ("身份证号前两位不是有效的省份代码,请核对后重新输入。",
                 "The first two digits of the ID number are not a valid province code; check it and enter it again."),
    "birth_date": ("身份证号中的出生日期无效,请核对后重新输入。",
                   "The birth date inside the ID number is not a valid date; check it and enter it again."),
    "check_char": ("身份证号最后一位校验码不正确,请逐位核对后重新输入。",
                   "The last (check) character of the ID number does not match; check each digit and enter it again."),
    "passport": ("护照号码应为5至17位字母或数字,请按护照资料页填写。",
                 "A passport number has 5 to 17 letters or digits; copy it from the passport's data page."),
    "hk_macau_permit": ("港澳居民来往内地通行证号码应为H或M加8位或10位数字,请按证件填写。",
                        "A Home Return Permit number is H or M followed by 8 or 10 digits; copy it from the permit."),
    "taiwan_permit": ("台湾居民来往大陆通行证号码应为8位数字,请按证件填写。",
                      "A Mainland Travel Permit for Taiwan Residents has an 8-digit number; copy it from the permit."),
    "id_type": ("不支持该证件类型。", "That ID document type is not supported."),
}


class InvalidIdNumber(GuahaoError):
    code, status = "invalid_id_number", 422
    zh = "证件号码无效,请核对后重新输入。"
    en = "The ID number is not valid; check it and enter it again."

    REASONS: ClassVar[dict[str, tuple[str, str]]] = _REASONS

    def __init__(self, reason: str, **params: Any) -> None:
        super().__init__(reason=reason, **params)

    def message(self, locale: str) -> str:
        zh, en = self.REASONS.get(self.params["reason"], (self.zh, self.en))
        return en if locale == "en" else zh


@dataclass(frozen=True)
class ResidentId:
    number: str  # normalised: 18 characters, upper-case X
    birth_date: dt.date
    sex: str  # "M" or "F"


def check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits (also used by test data)."""
    if len(first17) != 17 or not set(first17) <= _DIGITS:
        raise InvalidIdNumber("characters")
    return _CHECK_CHARS[sum(int(c) * w for c, w in zip(first17, _WEIGHTS)) % 11]


def _clean(value: object, reason: str) -> str:
    """Strip, translate full-width forms and upper-case; anything left outside ASCII is
    refused here, before str.upper() could turn a ligature such as 'ﬀ' into 'FF'."""
    if not isinstance(value, str):
        raise InvalidIdNumber("empty")
    cleaned = value.strip().translate(_FULLWIDTH)
    if not cleaned:
        raise InvalidIdNumber("empty")
    if not cleaned.isascii():
        raise InvalidIdNumber(reason)
    return cleaned.upper()


def validate_resident_id(value: str, *, today: dt.date) -> ResidentId:
    """Validate a GB 11643-1999 resident ID (居民身份证 / 港澳台居民居住证) number."""
    number = _clean(value, "characters")
    if len(number) != 18:
        raise InvalidIdNumber("length")
    body, last = number[:17], number[17]
    if not set(body) <= _DIGITS or last not in _CHECK_CHARS:
        raise InvalidIdNumber("characters")
    if int(body[:2]) not in PROVINCE_CODES:
        raise InvalidIdNumber("province")
    try:
        birth = dt.date(int(body[6:10]), int(body[10:12]), int(body[12:14]))
    except ValueError:
        raise InvalidIdNumber("birth_date") from None
    if birth.year < EARLIEST_BIRTH_YEAR or birth > today:
        raise InvalidIdNumber("birth_date")
    if check_char(body) != last:
        raise InvalidIdNumber("check_char")
    # the 17th digit (last of the sequence code) is odd for men, even for women
    return ResidentId(number=number, birth_date=birth, sex="M" if int(body[16]) % 2 else "F")


def validate_passport(value: str) -> str:
    # Passport numbers differ by country; ICAO 9303 only fixes "up to 9 characters" in the
    # MRZ, and a few countries print longer numbers, hence the generous 5-17 range.
    number = _clean(value, "passport")
    if not _PASSPORT_RE.fullmatch(number):
        raise InvalidIdNumber("passport")
    return number


def validate_hk_macau_permit(value: str) -> str:
    number = _clean(value, "hk_macau_permit")
    if not _HK_MACAU_RE.fullmatch(number):
        raise InvalidIdNumber("hk_macau_permit")
    return number


def validate_taiwan_permit(value: str) -> str:
    match = _TAIWAN_RE.fullmatch(_clean(value, "taiwan_permit"))
    if match is None:
        raise InvalidIdNumber("taiwan_permit")
    return match.group(1)


@dataclass(frozen=True)
class IdDocument:
    id_type: str
    number: str  # normalised
    birth_date: dt.date | None  # derived for resident IDs only
    sex: str | None


def validate_document(id_type: str, value: str, *, today: dt.date) -> IdDocument:
    """Validate and normalise a number of any accepted document type."""
    if id_type == "resident_id":
        rid = validate_resident_id(value, today=today)
        return IdDocument(id_type, rid.number, rid.birth_date, rid.sex)
    validators = {"passport": validate_passport, "hk_macau_permit": validate_hk_macau_permit,
                  "taiwan_permit": validate_taiwan_permit}
    validator = validators.get(id_type)
    if validator is None:
        raise InvalidIdNumber("id_type")
    return IdDocument(id_type, validator(value), None, None)
