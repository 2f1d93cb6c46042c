"""The key journey inside WeChat's in-app browser, as far as a test can be there: Chromium with
WeChat's Android user agent (its X5/XWEB webview is Chromium-based, and says MicroMessenger)
and the viewport left under WeChat's title bar (390x750). The page must not lean on what that
browser lacks or refuses: no geolocation (WeChat only offers it through its JS-SDK), no
pop-up windows, no file downloads, no service workers or notifications; nothing may be wider
than the screen. axe runs on every page, as in test_web_browser.py.
"""
from __future__ import annotations

import re

import pytest

from tests.paysim_fixture import *  # noqa: F403
from tests.test_web_browser import Phone, _add_and_verify_patient, _login, _shots_dir, chromium  # noqa: F401
from tests.web_support import CHROMIUM_ARGS, DAY_OK, make_world  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

WECHAT_UA = ("Mozilla/5.0 (Linux; Android 13; V2148A Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
             "Version/4.0 Chrome/111.0.5563.116 Mobile Safari/537.36 XWEB/1110005 MMWEBSDK/20230805 "
             "MMWEBID/2712 MicroMessenger/8.0.42.2460(0x28002A35) WeChat/arm64 Weixin NetType/WIFI "
             "Language/zh_CN ABI/arm64")
WECHAT_VIEWPORT = (390, 750)
# What the in-app browser does not give a page; removed before any script of ours runs, so a
# page that needed one of them breaks here. window.open answers null, as a blocked pop-up does.
WITHOUT_MISSING_FEATURES = """
  Object.defineProperty(Navigator.prototype, 'geolocation', {get: () => undefined});
  Object.defineProperty(Navigator.prototype, 'serviceWorker', {get: () => undefined});
  Object.defineProperty(Navigator.prototype, 'share', {get: () => undefined});
  delete window.Notification;
  window.__opened = 0;
  window.open = function () { window.__opened += 1; return null; };
"""


async def _fits_and_stays(phone: Phone, name: str) -> None:
    """axe + screenshot, and the WeChat-specific checks on the page now shown."""
    await phone.check(name)
    page = phone.page
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= WECHAT_VIEWPORT[0], (page.url, width)
    assert await page.locator("a[target=_blank], form[target=_blank]").count() == 0, page.url
    assert await page.locator("a[download]").count() == 0, page.url
    assert await page.evaluate("window.__opened") == 0, page.url


async def test_the_journey_in_the_wechat_browser(app, db, clock, chromium, live_app, our_port, tmp_path,
                                                 job_ctx):
    world = await make_world(db, clock)
    context = await chromium.new_context(viewport={"width": WECHAT_VIEWPORT[0], "height": WECHAT_VIEWPORT[1]},
                                         user_agent=WECHAT_UA, is_mobile=True, has_touch=True,
                                         device_scale_factor=2, locale="zh-CN")
    await context.add_init_script(WITHOUT_MISSING_FEATURES)
    page = await context.new_page()
    page.set_default_timeout(20_000)
    phone = Phone(page, f"http://127.0.0.1:{our_port}", _shots_dir(tmp_path), "")
    try:
        assert "MicroMessenger" in await page.evaluate("navigator.userAgent")
        await _login(phone, app)
        await _fits_and_stays(phone, "31-wechat-home")
        # "Nearby" needs geolocation: without it the button stays hidden and the city list works
        assert await page.locator("#nearby").is_hidden()
        await page.select_option("#city", "北京市")
        await page.wait_for_url(re.compile(r".*city=.*"))
        await _add_and_verify_patient(phone)

        await phone.goto("/")
        await page.fill("#q", "xnk")
        await page.wait_for_selector(".result-department")
        await page.click(".result-department")
        await page.click(f'[data-day="{DAY_OK.isoformat()}"]')
        await page.wait_for_selector(f'[data-slot="{world["slot"]}"] .slot__btn')
        await _fits_and_stays(phone, "32-wechat-department")
        await page.click(f'[data-slot="{world["slot"]}"] .slot__btn')
        await page.wait_for_selector("#confirm-form")
        await page.fill("#visit_reason", "咳嗽一周")
        await page.check("#consent_health")
        await _fits_and_stays(phone, "33-wechat-confirm")
        await page.click("#submit-booking")
        await page.wait_for_selector("#pay-form")
        await _fits_and_stays(phone, "34-wechat-pay")
        await page.check('input[value="wechat"]')
        await page.click("#pay")
        await page.wait_for_selector("button.pay")  # the sandbox cashier, in the same tab
        await page.click("button.pay")
        await page.click("text=返回商户页面")
        await page.wait_for_url(re.compile(r".*/bookings/\d+$"))
        await page.wait_for_selector("#visit-no", timeout=40_000)
        assert "咳嗽一周" in await page.inner_text("#visit-reason")
        assert await page.is_visible("#wechat-hint")  # the .ics cannot be saved in WeChat: it says so
        await _fits_and_stays(phone, "35-wechat-confirmed")
        await page.click("#cancel")
        await page.wait_for_selector("#cancel-form")
        await page.click("#confirm-cancel")
        await page.wait_for_url(re.compile(r".*/bookings/\d+\?cancelled=1$"))
        await _fits_and_stays(phone, "36-wechat-cancelled")
    finally:
        await context.close()
