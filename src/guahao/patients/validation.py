"""Normalisers for the personal fields of a patient. Each returns the stored form or raises
the feature's typed error; none of them echoes the value into the error."""
from __future__ import annotations

import datetime as dt
import re
import unicodedata

import phonenumbers

from guahao.core.idcard import EARLIEST_BIRTH_YEAR
from guahao.patients.errors import InvalidBirthDate, InvalidCardNumber, InvalidEmail, InvalidName, InvalidPhone

NAME_MAX = 30
MIDDLE_DOT = "·"  # U+00B7, the separator in transliterated names (阿依古丽·买买提)
# Look-alikes people type instead of U+00B7 on various keyboards and IMEs.
_DOT_LOOKALIKES = str.maketrans({c: MIDDLE_DOT for c in "•‧∙・･⋅"})
# Unified and compatibility ideographs, including the astral-plane extensions B-I where
# rare name characters live (e.g. 𠈌, 𪚥). By code point ranges rather than unicodedata
# names: Python 3.11 ships Unicode 14 and would not know characters of extensions H and I.
_CJK_RANGES = (
    (0x3400, 0x4DBF),    # extension A
    (0x4E00, 0x9FFF),    # unified ideographs
    (0xF900, 0xFAFF),    # compatibility ideographs
    (0x20000, 0x2FA1F),  # extensions B-F, I and compatibility supplement
    (0x30000, 0x323AF),  # extensions G, H
)
_LATIN_JOINERS = frozenset("-'.")  # Jean-Luc, O'Brien, Martin Jr.
_SPACES = re.compile(r"\s+")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return ch == "〇" or any(lo <= cp <= hi for lo, hi in _CJK_RANGES)


def _is_latin_letter(ch: str) -> bool:
    return unicodedata.category(ch).startswith("L") and "LATIN" in unicodedata.name(ch, "")


def normalise_name(value: str) -> str:
    """A name as printed on the ID document: CJK (incl. rare characters), Latin letters,
    the middle dot and single spaces; no digits, control characters or other symbols."""
    name = unicodedata.normalize("NFC", value).translate(_DOT_LOOKALIKES)
    name = _SPACES.sub(" ", name.strip())
    if not 1 <= len(name) <= NAME_MAX:
        raise InvalidName()
    previous_is_separator = True  # a name may not start with a separator
    for ch in name:
        if _is_cjk(ch) or _is_latin_letter(ch):
            previous_is_separator = False
        elif ch == MIDDLE_DOT or ch == " " or ch in _LATIN_JOINERS:
            if previous_is_separator:
                raise InvalidName()
            previous_is_separator = True
        else:
            raise InvalidName()
    if previous_is_separator and name[-1] != ".":  # "Martin Jr." may end with a period
        raise InvalidName()
    return name


def normalise_mobile(value: str) -> str:
    """A mainland China mobile number in E.164 (+8613812341234)."""
    try:
        number = phonenumbers.parse(value, "CN")
    except phonenumbers.NumberParseException:
        raise InvalidPhone() from None
    mobile_types = (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    if (not phonenumbers.is_valid_number(number)
            or phonenumbers.region_code_for_number(number) != "CN"
            or phonenumbers.number_type(number) not in mobile_types):
        raise InvalidPhone()
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


_CARD_RE = re.compile(r"[A-Z0-9-]{4,32}", re.ASCII)


def normalise_card(value: str | None) -> str | None:
    """Insurance and hospital visit card numbers differ by region and hospital; we keep a
    loose format check (printed cards group digits with spaces, which we drop)."""
    if value is None:
        return None
    card = _SPACES.sub("", value)
    if not card:
        return None
    # ASCII first: str.upper() would turn a ligature such as 'ﬀ' into 'FF'
    if not card.isascii() or not _CARD_RE.fullmatch(card.upper()):
        raise InvalidCardNumber()
    return card.upper()


def check_birth_date(value: dt.date, *, today: dt.date) -> dt.date:
    if value.year < EARLIEST_BIRTH_YEAR or value > today:
        raise InvalidBirthDate()
    return value


def age_on(birth_date: dt.date, today: dt.date) -> int:
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return max(0, today.year - birth_date.year - before_birthday)


_EMAIL_RE = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")


def normalise_email(value: str | None) -> str | None:
    """A loose shape check (something@domain.tld); the address is never sent anything by us yet."""
    if value is None or not value.strip():
        return None
    email = value.strip()
    if len(email) > 254 or not _EMAIL_RE.fullmatch(email):
        raise InvalidEmail()
    return email


def normalise_text(value: str | None) -> str | None:
    """Free text (address, medical history): trimmed; empty means none."""
    if value is None:
        return None
    text = value.strip()
    return text or None
