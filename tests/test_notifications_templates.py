"""SMS templates render in zh-CN and English with their parameters (no database)."""
from __future__ import annotations

import datetime as dt
import re

import pytest

from guahao.core.clock import SHANGHAI
from guahao.notifications import templates
from guahao.notifications.port import Sms

SAMPLE = {
    "patient": "王*", "hospital": "北京协和医院", "department": "心内科", "doctor": "张伟",
    "time": "11月21日 上午 08:00-08:30", "visit_no": "7", "code": "12345678", "location": "门诊楼2层B区",
    "deadline": "10:15", "refund": "费用（挂号费 ¥5.00 + 诊查费 ¥20.00，合计 ¥25.00）将原路退回",
    "until": "2026年12月19日 10:00", "fees": "挂号费 ¥5.00 + 诊查费 ¥20.00，合计 ¥25.00", "reason": "重复预约",
    "ahead": "2",
}
EXPECTED = {
    "booking_confirmed": ("预约成功", "Booking confirmed"),
    "booking_confirmed_register": ("办理建档", "register at the hospital's window"),
    "hold_expiring": ("请尽快完成支付", "complete the payment"),
    "booking_cancelled": ("已取消", "has been cancelled"),
    "booking_expired": ("未在规定时间内支付", "was not completed in time"),
    "booking_revoked": ("停诊", "suspended the clinic"),
    "reminder": ("明天", "tomorrow"),
    "restriction_applied": ("暂停至", "suspended until"),
    "payment_late_refunded": ("原路退回", "refunded"),
    "waitlist_offer": ("候补成功", "Waitlist success"),
    "waitlist_skipped": ("未能分配号源", "no slot could be given"),
    "waitlist_closed": ("候补已截止", "has closed without a slot"),
    "waitlist_paused": ("候补已暂停", "is paused and keeps its place"),
    "waitlist_resumed": ("已恢复出诊", "has resumed"),
    "draw_won": ("摇号中签", "was drawn"),
    "draw_not_won": ("未中签", "was not drawn"),
    "draw_skipped": ("未能锁号", "could not be given the number"),
}


def test_every_template_is_covered():
    assert set(templates.TEMPLATES) == set(EXPECTED)


@pytest.mark.parametrize("code", sorted(EXPECTED))
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_each_template_renders_with_all_its_parameters(code, locale):
    params = templates.pick_params(code, SAMPLE)
    assert list(params) == list(templates.TEMPLATES[code].params)
    text = templates.render(code, params, locale)
    assert "{" not in text and "}" not in text
    for name in params:
        assert params[name] in text, (name, text)
    zh, en = EXPECTED[code]
    assert (en if locale == "en" else zh) in text
    has_chinese_prose = bool(re.search(r"[您的已请因为]", text))
    assert has_chinese_prose == (locale == "zh-CN")


def test_confirmed_text_in_zh_reads_like_the_product():
    text = templates.render("booking_confirmed", templates.pick_params("booking_confirmed", SAMPLE), "zh-CN")
    assert text == ("王*预约成功：北京协和医院 心内科 张伟，11月21日 上午 08:00-08:30，就诊序号7，取号码12345678。"
                    "请按时到门诊楼2层B区签到取号。")


def test_a_missing_parameter_is_refused():
    with pytest.raises(KeyError):
        templates.pick_params("booking_confirmed", {"patient": "王*"})


def test_english_is_its_own_gateway_template():
    assert templates.gateway_id("reminder", "zh-CN") == "reminder"
    assert templates.gateway_id("reminder", "en") == "reminder_en"
    with pytest.raises(KeyError):
        templates.gateway_id("nope", "en")


def test_visit_time_is_local_to_the_hospital():
    start = dt.datetime(2026, 11, 21, 0, 0, tzinfo=dt.UTC)  # 08:00 in Shanghai
    end = start + dt.timedelta(minutes=30)
    assert templates.visit_time(start, end, "morning", SHANGHAI, "zh-CN") == "11月21日 上午 08:00-08:30"
    assert templates.visit_time(start, end, "morning", SHANGHAI, "en") == "21 Nov, morning, 08:00-08:30"
    afternoon = start + dt.timedelta(hours=6)
    assert templates.visit_time(afternoon, afternoon + dt.timedelta(hours=4), "afternoon", SHANGHAI,
                                "zh-CN") == "11月21日 下午 14:00-18:00"


def test_dates_money_and_refund_status():
    until = dt.datetime(2026, 12, 19, 2, 0, tzinfo=dt.UTC)
    assert templates.date_time(until, SHANGHAI, "zh-CN") == "2026年12月19日 10:00"
    assert templates.date_time(until, SHANGHAI, "en") == "19 Dec 2026, 10:00"
    assert templates.refund_status(True, "zh-CN") == "费用将原路退回"
    assert templates.refund_status(False, "zh-CN") == "未产生费用"
    assert "refunded" in templates.refund_status(True, "en")


def test_the_message_renders_its_own_text():
    sms = Sms(phone="+8613900001111", template="hold_expiring",
              params=templates.pick_params("hold_expiring", SAMPLE), locale="en", out_id="hold_expiring:1")
    assert sms.gateway_template == "hold_expiring_en"
    assert sms.text.startswith("The slot held for 王* at 北京协和医院") and "10:15" in sms.text


# --- fees: both parts, never the whole called 挂号费 -----------------------------------------------

def test_fee_text_names_registration_and_consultation_fee_and_the_total():
    assert templates.fee_text(500, 2000, "zh-CN") == "挂号费 ¥5.00 + 诊查费 ¥20.00，合计 ¥25.00"
    assert templates.fee_text(500, 2000, "en") == \
        "registration fee ¥5.00 + consultation fee ¥20.00, total ¥25.00"
    assert templates.fee_text(5, 0, "zh-CN") == "挂号费 ¥0.05 + 诊查费 ¥0.00，合计 ¥0.05"


@pytest.mark.parametrize("locale, expected", [
    ("zh-CN", "您为王*支付的北京协和医院 心内科 11月21日 上午 08:00-08:30的费用（挂号费 ¥5.00 + 诊查费 ¥20.00，"
              "合计 ¥25.00）到账时锁号已超时，预约未成功，费用将原路退回。"),
    ("en", "The payment (registration fee ¥5.00 + consultation fee ¥20.00, total ¥25.00) for 王* at 北京协和医院, "
           "心内科, 11月21日 上午 08:00-08:30 arrived after the hold had expired, so no booking was made; it will be "
           "refunded to the original payment method."),
])
def test_late_payment_text_names_both_fees(locale, expected):
    params = templates.pick_params("payment_late_refunded",
                                   {**SAMPLE, "fees": templates.fee_text(500, 2000, locale)})
    assert templates.render("payment_late_refunded", params, locale) == expected


@pytest.mark.parametrize("locale, expected", [
    ("zh-CN", "费用（挂号费 ¥5.00 + 诊查费 ¥20.00，合计 ¥25.00）将原路退回"),
    ("en", "the fees (registration fee ¥5.00 + consultation fee ¥20.00, total ¥25.00) will be refunded to the "
           "original payment method"),
])
def test_a_refund_names_both_fees(locale, expected):
    refund = templates.refund_status(True, locale, templates.fee_text(500, 2000, locale))
    assert refund == expected
    params = templates.pick_params("booking_cancelled", {**SAMPLE, "refund": refund})
    assert expected in templates.render("booking_cancelled", params, locale)


@pytest.mark.parametrize("code", sorted(EXPECTED))
@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_no_template_calls_an_amount_the_registration_fee_alone(code, locale):
    text = templates.TEMPLATES[code].text(locale)
    assert "挂号费" not in text and "registration fee" not in text.lower()
