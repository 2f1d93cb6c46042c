"""The pages issue 9's last part added, in the phone browser (390x844), in zh-CN and en, with
axe on each: a patient's visit cards, hospital notices on the hospital page and home, the
病情描述 on the confirm page and on the booking. Screenshots as in test_web_browser.py."""
from __future__ import annotations

import re

import pytest

from guahao.catalog import notices as hospital_notices
from tests.paysim_fixture import *  # noqa: F403
from tests.test_web_browser import TEXT, _add_and_verify_patient, _login, chromium, open_phone  # noqa: F401
from tests.web_support import make_world

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
CARD = "JZK88001234"
REASON = {"zh-CN": "反复胸闷一周,活动后加重。", "en": "Chest tightness for a week, worse after exercise."}


async def _publish(db, clock, hospital_id: int) -> None:
    now = clock.now()
    async with db.begin() as s:
        await hospital_notices.do_publish(s, hospital_id=hospital_id, title="流感疫苗接种门诊开放",
                                          body="每周一至周五上午,门诊楼1层预防保健科。\n请携带身份证。",
                                          valid_from=now, valid_until=None, pinned=True, staff_id=None, now=now)
        await hospital_notices.do_publish(s, hospital_id=hospital_id, title="门诊楼东门临时封闭",
                                          body="施工期间请从南门进入,轮椅通道在南门西侧。", valid_from=now,
                                          valid_until=now.replace(day=30), pinned=False, staff_id=None, now=now)


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
async def test_cards_notices_and_symptoms_on_a_phone(locale, app, db, clock, open_phone):
    world = await make_world(db, clock)
    await _publish(db, clock, world["hospital"])
    phone = await open_phone(locale, "" if locale == "zh-CN" else "-en")
    page = phone.page
    try:
        await _login(phone, app)
        await _add_and_verify_patient(phone)
        await page.click(".cards-link")
        await page.wait_for_selector("#card-form")
        await page.select_option("#hospital_id", str(world["hospital"]))
        await page.fill("#card_number", CARD)
        await page.click("#save-card")
        await page.wait_for_selector(f'[data-hospital="{world["hospital"]}"]')
        row = await page.inner_text(f'[data-hospital="{world["hospital"]}"]')
        assert "*******1234" in row and CARD not in await page.content()
        await phone.check("26-visit-cards")

        await phone.goto(f"/hospitals/{world['hospital']}")
        board = await page.inner_text("#hospital-notices")
        assert board.index("流感疫苗接种门诊开放") < board.index("门诊楼东门临时封闭")
        await phone.check("27-hospital-notices")
        await phone.goto("/")
        assert "流感疫苗接种门诊开放" in await page.inner_text("#home-notices")
        await phone.check("28-home-notices")

        await phone.goto(f"/book/{world['slot']}")
        await page.fill("#visit_reason", REASON[locale])
        await page.check("#consent_health")
        await phone.check("29-confirm-symptoms")
        await page.click("#submit-booking")
        await page.wait_for_selector("#pay-form")
        booking = re.search(r"/bookings/(\d+)/pay", page.url).group(1)
        await phone.goto(f"/bookings/{booking}")
        assert REASON[locale] in await page.inner_text("#visit-reason")
        await phone.check("30-booking-symptoms")
        assert len(phone.checked) == 9  # login and patient steps, then the five above
    finally:
        await page.context.close()
