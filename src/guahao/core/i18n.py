"""Locale negotiation (Babel) and the two languages we speak: zh-CN (default) and en."""
from __future__ import annotations

from babel import Locale, UnknownLocaleError

SUPPORTED = ("zh-CN", "en")
DEFAULT = "zh-CN"


def negotiate(accept_language: str | None) -> str:
    """Pick zh-CN or en from an Accept-Language header, honouring q-values."""
    if not accept_language:
        return DEFAULT
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(accept_language.split(",")):
        piece = part.strip()
        if not piece:
            continue
        tag, _, q = piece.partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, index, tag.strip()))
    for _, _, tag in sorted(ranked):
        if tag == "*":
            return DEFAULT
        try:
            lang = Locale.parse(tag.replace("-", "_")).language
        except (ValueError, UnknownLocaleError):
            continue
        if lang == "zh":
            return "zh-CN"
        if lang == "en":
            return "en"
    return DEFAULT


def request_language(headers, saved: str | None) -> str:
    """The language of an API answer. An explicit Accept-Language wins: an API client that
    says which language it wants gets it, whatever the account saved (a shared integration
    may serve users of both languages with one account). Without the header, the account's
    saved choice (set on the web or PATCH /api/v1/me); then the default, zh-CN."""
    header = headers.get("accept-language")
    if header:
        return negotiate(header)
    return saved if saved in SUPPORTED else DEFAULT
