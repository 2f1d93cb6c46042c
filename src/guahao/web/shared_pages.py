"""Pages every visitor sees alike, rendered once per version of what they show.

Around a release thousands of patients refresh a doctor's or a department's page every
second. Such a page is a pure function of the availability answer (the very object the API
sends, kept for at most 1 s: scheduling/avail_cache.py), the catalogue parts kept under the
same rule, the countdowns to release instants (whole seconds of the caller's clock), and the
visitor's language, elderly mode, htmx and WeChat flags. So its HTML is kept per path, view
(chosen day, level) and those flags, and reused while it was made from the very same answer
and catalogue objects and the countdowns read the same. It is never older than the answer
it shows: the page's staleness is the API's (a commit in this process is seen at once,
another process's within 1 s), with no rule of its own.

Nothing of one visitor enters the kept HTML: the CSRF token is rendered as a random
placeholder and each response gets its own browser's token in its place; `page` and
`logged_in` are refused (a template that would show something per visitor fails loudly in
the tests instead of showing one visitor's account to another); cookies and headers are set
per response (pages.respond).
"""
from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi.responses import HTMLResponse
from markupsafe import escape

from guahao.web import i18n
from guahao.web.format import seconds_until
from guahao.web.pages import Page, context_of, env, in_wechat, respond

MAX_ENTRIES = 1_000  # one entry per view; each holds its answer, catalogue parts and HTML
# stands in for the CSRF token; random per process, so no catalogue text can contain it
PLACEHOLDER = "csrf-" + secrets.token_hex(16)


class PerVisitorInSharedPage(RuntimeError):
    """A shared page's template used something that differs between visitors."""


class _Refused:
    """`page` and `logged_in` in a shared page: any use of them is an error, never a guess."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _refuse(self, *_args: Any) -> Any:
        raise PerVisitorInSharedPage(f"`{self._name}` differs between visitors: not in a shared page")

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)  # Python's and Jinja's own probing
        self._refuse()

    __bool__ = __str__ = __iter__ = __eq__ = _refuse
    __hash__ = None


@dataclass(frozen=True)
class _Kept:
    sources: tuple  # what the HTML was made from, compared by identity
    instants: tuple[dt.datetime, ...]  # the release instants it counts down to
    countdowns: tuple[int, ...]  # and the seconds it shows for them
    html: str


# (template, path, view, locale, elder, htmx, WeChat) -> the last page made for it
_kept: dict[tuple, _Kept] = {}


def shared_render(page: Page, template: str, *, view: tuple, sources: tuple, now: dt.datetime,
                  instants: Callable[[], Iterable[dt.datetime]], values: Callable[[], dict[str, Any]],
                  keep: bool = True) -> HTMLResponse:
    """`template` rendered from `values()` (made from `sources`, `now` and `view` alone), or
    the HTML kept for the same view from the very same `sources` whose countdowns to
    `instants()` still read the same at `now`. `keep=False` renders without keeping (an
    answer made afresh for every request, such as a realtime hospital's)."""
    request = page.request
    key = (template, request.url.path, view, page.locale, page.elder, request.headers.get("hx-request") == "true",
           in_wechat(request))
    kept = _kept.get(key)
    if not (kept is not None and len(kept.sources) == len(sources)
            and all(a is b for a, b in zip(kept.sources, sources, strict=True))
            and _countdowns(kept.instants, now) == kept.countdowns):
        moments = tuple(sorted(set(instants())))
        context = {**context_of(page), "page": _Refused("page"), "logged_in": _Refused("logged_in"),
                   "_": partial(i18n.translate, page.locale), "csrf_token": PLACEHOLDER, **values()}
        kept = _Kept(sources, moments, _countdowns(moments, now), env.get_template(template).render(context))
        if keep:
            if len(_kept) >= MAX_ENTRIES:
                _kept.clear()  # a crude bound, as the answers' own cache has
            _kept[key] = kept
    return respond(page, kept.html.replace(PLACEHOLDER, str(escape(page.csrf_token))))


def _countdowns(instants: tuple[dt.datetime, ...], now: dt.datetime) -> tuple[int, ...]:
    # the templates' own arithmetic (format.seconds_until), so kept and fresh cannot differ
    return tuple(seconds_until(t, now) for t in instants)
