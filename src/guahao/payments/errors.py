"""Payment refusals: stable codes, messages that say what the patient can do."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class NotPayable(GuahaoError):
    code, status = "booking_not_payable", 409
    zh = "该挂号单当前状态({state})无需或无法支付。"
    en = "This booking is {state}; it cannot be paid."


class AlreadyPaid(GuahaoError):
    code, status = "payment_already_paid", 409
    zh = "该挂号单已支付,正在确认预约,请稍后刷新。"
    en = "This booking has been paid; the registration is being confirmed. Refresh in a moment."


class PaymentsUnavailable(GuahaoError):
    code, status = "payments_unavailable", 503
    zh = "支付服务暂时不可用,请稍后重试;锁号期间号源为您保留。"
    en = "Payment is unavailable right now; please retry shortly. Your hold is kept until it expires."


class NotificationRejected(GuahaoError):
    code, status = "notification_rejected", 401
    zh = "支付通知验签失败。"
    en = "The payment notification failed verification."


class NotificationMalformed(GuahaoError):
    code, status = "notification_malformed", 400
    zh = "支付通知格式错误。"
    en = "The payment notification is malformed."


class AmountMismatch(GuahaoError):
    code, status = "payment_amount_mismatch", 400
    zh = "支付金额与订单金额不符,已记录待核查。"
    en = "The paid amount differs from the order amount; recorded for review."


class UnknownPayment(GuahaoError):
    code, status = "payment_unknown", 400
    zh = "找不到该支付订单。"
    en = "No such payment."


class ReportRangeTooLong(GuahaoError):
    code, status = "report_range_too_long", 422
    zh = "查询区间不能超过{days}天。"
    en = "The date range may not exceed {days} days."
