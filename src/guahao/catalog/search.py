"""Search across hospitals, departments and doctors by Chinese text, full pinyin and initials.

Keys: every name is stored with two derived columns, `name_pinyin` (toneless pinyin joined
without spaces, "心内科" -> "xinneike") and `name_initials` ("xnk"). A person's name may carry
alternative readings separated by a space ("单雄信" -> "shanxiongxin danxiongxin"): pypinyin
reads 单 / 曾 / 解 ... as common words (dan, ceng, jie), but as surnames they are shan, zeng,
xie. We store the surname reading first and keep the word reading too, because patients type
whichever they believe.

Query: candidates are found in SQL with LIKE on the name and the stored keys (portable to
SQLite and PostgreSQL; user input is escaped, so "%" and "_" are literal), ordered coarsely in
SQL and cut to a bounded set; the final ranking happens in Python where the rules are easy to
read: exact name > name prefix > initials / pinyin exact > pinyin / initials prefix > name
substring > pinyin substring; among doctors a higher title comes first on a tie; then shorter
name, pinyin, id, so the order is deterministic.
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from pypinyin import Style, lazy_pinyin, load_phrases_dict
from sqlalchemy import ColumnElement, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from guahao.catalog import labels
from guahao.catalog.models import TITLES, Department, Doctor, Hospital

MAX_QUERY_LENGTH = 50
CANDIDATES_PER_KIND = 200  # the bounded set ranked in Python
PINYIN_COLUMN_LENGTH = 400
INITIALS_COLUMN_LENGTH = 100

_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_RUNS = re.compile(f"[{_HAN}]+|[^{_HAN}]+")
_ASCII_WORD = re.compile(r"[a-z0-9]+")

# Single-character surnames whose surname reading differs from the everyday one that
# pypinyin picks. Compound surnames (长孙, 尉迟, 万俟, 单于) pypinyin already reads right.
SURNAME_READINGS = {
    "单": "shan", "曾": "zeng", "解": "xie", "仇": "qiu", "朴": "piao", "查": "zha", "区": "ou",
    "乐": "yue", "缪": "miao", "翟": "zhai", "覃": "qin", "盖": "ge", "种": "chong", "繁": "po",
    "秘": "bi", "召": "shao", "员": "yun", "黑": "he", "句": "gou", "折": "she", "薄": "bo",
}

# Place names that pypinyin reads as ordinary words ("朝阳医院" -> zhaoyang): hospital names
# are full of them. This extends pypinyin's process-wide phrase table once, at import.
PLACE_READINGS = {
    "朝阳": "chao yang", "长治": "chang zhi", "涡阳": "guo yang", "洪洞": "hong tong", "尉氏": "yu shi",
    "单县": "shan xian",
}
load_phrases_dict({phrase: [[s] for s in reading.split()] for phrase, reading in PLACE_READINGS.items()})


def _syllables(text: str) -> list[tuple[str, bool]]:
    """(token, is_han): toneless pinyin syllables of Han runs, lowercase ASCII words otherwise."""
    out: list[tuple[str, bool]] = []
    for run in _RUNS.findall(unicodedata.normalize("NFKC", text)):
        if re.match(f"[{_HAN}]", run):
            # a rare character pypinyin cannot read comes back unchanged: drop it
            out.extend((s, True) for s in lazy_pinyin(run, style=Style.NORMAL) if _ASCII_WORD.fullmatch(s))
        else:
            out.extend((w, False) for w in _ASCII_WORD.findall(run.lower()))
    return out


def pinyin_keys(text: str, *, person_name: bool = False) -> tuple[str, str]:
    """(full, initials) search keys of a name; alternatives are separated by a space.

    Non-Han words are kept whole and lowercased in both keys ("MRI室" -> "mrishi", "mris").
    """
    tokens = _syllables(text)
    readings = [tokens]
    name = unicodedata.normalize("NFKC", text).strip()
    if person_name and name[:1] in SURNAME_READINGS and tokens and tokens[0][1]:
        surname = SURNAME_READINGS[name[0]]
        if tokens[0][0] != surname:
            readings = [[(surname, True), *tokens[1:]], tokens]
    full = _unique("".join(t for t, _ in r) for r in readings)
    initials = _unique("".join(t[0] if han else t for t, han in r) for r in readings)
    return " ".join(full)[:PINYIN_COLUMN_LENGTH], " ".join(initials)[:INITIALS_COLUMN_LENGTH]


def _unique(items) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def apply_search_keys(obj: Hospital | Department | Doctor) -> None:
    """Set name_pinyin / name_initials from obj.name (doctors: surname readings too)."""
    obj.name_pinyin, obj.name_initials = pinyin_keys(obj.name or "", person_name=isinstance(obj, Doctor))


# --- queries ---------------------------------------------------------------------------------

def normalize_query(q: str) -> tuple[str, str | None]:
    """(text for name matching, ASCII key or None). "Zhang Wei" -> key "zhangwei"; a query with
    anything but letters, digits, spaces and apostrophes has no key (no pinyin matching)."""
    text = unicodedata.normalize("NFKC", q).strip().lower()
    key = re.sub(r"[\s']+", "", text)
    return text, (key if _ASCII_WORD.fullmatch(key) else None)


def keyword_condition(model, text: str, key: str | None) -> ColumnElement[bool]:
    """LIKE on the name and, for an ASCII query, on the stored keys; input is escaped."""
    conds = [func.lower(model.name).contains(text, autoescape=True)]
    if key:
        conds += [model.name_pinyin.contains(key, autoescape=True),
                  model.name_initials.contains(key, autoescape=True)]
    return or_(*conds)


def _coarse_rank(model, text: str, key: str | None):
    """SQL ordering that keeps the best candidates inside the bounded set."""
    whens = [(func.lower(model.name) == text, 0),
             (func.lower(model.name).startswith(text, autoescape=True), 1)]
    if key:
        whens += [(model.name_initials == key, 2), (model.name_pinyin == key, 2),
                  (model.name_pinyin.startswith(key, autoescape=True), 3),
                  (model.name_initials.startswith(key, autoescape=True), 3)]
    whens.append((func.lower(model.name).contains(text, autoescape=True), 4))
    return case(*whens, else_=5)


def match_tier(name: str, pinyin: str, initials: str, text: str, key: str | None) -> int | None:
    """0 exact name, 1 name prefix, 2 pinyin/initials exact, 3 pinyin/initials prefix,
    4 name substring, 5 pinyin/initials substring; None if it does not match at all."""
    lowered = unicodedata.normalize("NFKC", name).lower()
    keys = [*pinyin.split(), *initials.split()] if key else []
    if lowered == text:
        return 0
    if lowered.startswith(text):
        return 1
    if key in keys:
        return 2
    if any(k.startswith(key) for k in keys):
        return 3
    if text in lowered:
        return 4
    if any(key in k for k in keys):
        return 5
    return None  # e.g. a LIKE hit across the space between two alternatives


_TITLE_RANK = {t: i for i, t in enumerate(TITLES)}


def _ranked(rows: Sequence[Any], text: str, key: str | None, limit: int, title_of=None) -> list[Any]:
    scored = []
    for row in rows:
        obj = row[0]
        tier = match_tier(obj.name, obj.name_pinyin, obj.name_initials, text, key)
        if tier is None:
            continue
        title = _TITLE_RANK.get(title_of(obj), 9) if title_of else 0
        scored.append(((tier, title, len(obj.name), obj.name_pinyin, obj.id), row))
    scored.sort(key=lambda item: item[0])
    return [row for _, row in scored[:limit]]


async def search(session: AsyncSession, q: str, *, locale: str, city: str | None = None,
                 hospital_id: int | None = None, limit: int = 10) -> dict[str, list[dict]]:
    """Grouped results {hospitals, departments, doctors}; q must already be validated."""
    text, key = normalize_query(q)
    scope = [Hospital.active.is_(True)]
    if city:
        scope.append(Hospital.city == city)
    if hospital_id is not None:
        scope.append(Hospital.id == hospital_id)

    stmt = (select(Hospital).where(*scope, keyword_condition(Hospital, text, key))
            .order_by(_coarse_rank(Hospital, text, key), func.length(Hospital.name), Hospital.id)
            .limit(CANDIDATES_PER_KIND))
    hospitals = _ranked((await session.execute(stmt)).all(), text, key, limit)

    parent = aliased(Department)
    stmt = (select(Department, Hospital.name, parent.name).join(Hospital, Department.hospital_id == Hospital.id)
            .outerjoin(parent, Department.parent_id == parent.id)
            .where(*scope, keyword_condition(Department, text, key))
            .order_by(_coarse_rank(Department, text, key), func.length(Department.name), Department.id)
            .limit(CANDIDATES_PER_KIND))
    departments = _ranked((await session.execute(stmt)).all(), text, key, limit)

    stmt = (select(Doctor, Department.name, Hospital.name)
            .join(Department, Doctor.department_id == Department.id)
            .join(Hospital, Doctor.hospital_id == Hospital.id)
            .where(*scope, Doctor.active.is_(True), keyword_condition(Doctor, text, key))
            .order_by(_coarse_rank(Doctor, text, key), func.length(Doctor.name), Doctor.id)
            .limit(CANDIDATES_PER_KIND))
    doctors = _ranked((await session.execute(stmt)).all(), text, key, limit, title_of=lambda d: d.title)

    return {
        "hospitals": [{"id": h.id, "name": h.name, "level": h.level,
                       "level_label": labels.level(h.level, locale), "city": h.city,
                       "district": h.district} for (h,) in hospitals],
        "departments": [{"id": d.id, "name": d.name, "hospital_id": d.hospital_id, "hospital_name": hname,
                         "parent_id": d.parent_id, "parent_name": pname} for d, hname, pname in departments],
        "doctors": [{"id": d.id, "name": d.name, "title": d.title, "title_label": labels.title(d.title, locale),
                     "registration_level": d.registration_level,
                     "registration_level_label": labels.registration_level(d.registration_level, locale),
                     "department_id": d.department_id, "department_name": dname,
                     "hospital_id": d.hospital_id, "hospital_name": hname} for d, dname, hname in doctors],
    }
