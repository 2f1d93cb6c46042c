"""Babel gettext catalogs of the patient pages: English message ids in the code and the
templates, translated to zh-CN (the default language) in locale/zh_CN/LC_MESSAGES/messages.po;
en needs no translation. The .po files are read with Babel when the process starts (no
compile step, no .mo files to keep in sync). Refusals are not here: they are the API's own
messages (GuahaoError.message), so a page and the API say the same thing.

`python -m guahao.web.i18n` lists the message ids used by the code and templates that the
zh-CN catalog does not translate yet (tests/test_web_i18n.py fails on any).
"""
from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from babel.messages.pofile import read_po

HERE = Path(__file__).resolve().parent
LOCALE_DIR = HERE / "locale"
CATALOGS = {"zh-CN": "zh_CN", "en": "en"}
# _("...") and _('...') in templates and in this package's Python files
MESSAGE_CALL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


@cache
def catalog(locale: str) -> dict[str, str]:
    folder = CATALOGS.get(locale)
    path = LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po" if folder else None
    if path is None or not path.exists():
        return {}
    with path.open("rb") as f:
        po = read_po(f, locale=folder)
    return {m.id: m.string for m in po if m.id and isinstance(m.id, str) and m.string and not m.fuzzy}


def translate(locale: str, message: str, **params: Any) -> str:
    text = catalog(locale).get(message, message)
    if params:
        try:
            return text % params
        except (KeyError, ValueError, TypeError):
            return message % params
    return text


def used_messages() -> set[str]:
    found: set[str] = set()
    code = [p for p in HERE.rglob("*.py") if p.name != "i18n.py"]  # the pages and web/staff/
    for path in list((HERE / "templates").rglob("*.html")) + code:
        for double, single in MESSAGE_CALL.findall(path.read_text(encoding="utf-8")):
            found.add((double or single).encode().decode("unicode_escape") if "\\" in (double or single)
                      else (double or single))
    return found


def untranslated(locale: str = "zh-CN") -> list[str]:
    known = catalog(locale)
    return sorted(m for m in used_messages() if m not in known)


if __name__ == "__main__":
    missing = untranslated()
    for message in missing:
        print(message)
    sys.exit(1 if missing else 0)
