"""Every text of every page exists in both languages: the zh-CN catalog translates each
message the templates and views use, with the same placeholders, and an English page shows
none of the Chinese texts."""
from __future__ import annotations

import re

import httpx

from guahao.web import i18n

PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def test_every_page_text_has_a_zh_cn_translation():
    assert len(i18n.used_messages()) > 150
    assert i18n.untranslated("zh-CN") == []


def test_translations_keep_their_placeholders():
    for message, translated in i18n.catalog("zh-CN").items():
        assert set(PLACEHOLDER.findall(message)) == set(PLACEHOLDER.findall(translated)), message


def test_an_unknown_message_falls_back_to_the_english_text():
    assert i18n.translate("zh-CN", "no such text %(n)s", n=3) == "no such text 3"
    assert i18n.translate("en", "Log in") == "Log in"
    assert i18n.translate("zh-CN", "Log in") == "登录"


async def test_english_pages_show_no_chinese_interface_text(app):
    zh_texts = [t for t in i18n.catalog("zh-CN").values() if len(t) >= 4]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver",
                                 headers={"Accept-Language": "en-GB,en;q=0.9", "Accept": "text/html"}) as c:
        for path in ("/", "/login", "/search?q=xnk", "/no-such-page"):
            html = (await c.get(path)).text
            assert '<html lang="en">' in html, path
            leftovers = [t for t in zh_texts if t in html]
            assert leftovers == [], (path, leftovers)
