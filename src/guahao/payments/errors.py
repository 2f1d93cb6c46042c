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


class NotificationTooLarge(GuahaoError):
    code, status = "notification_too_large", 413
    zh = "支付通知超过{limit}字节,已拒收。"
    en = "The payment notification is larger than {limit} bytes; refused."


class NotPaidAtProvider(GuahaoError):
    code, status = "payment_not_paid_at_provider", 409
    zh = "支付平台显示该订单未支付,无需退款;如需结束请关闭订单。"
    en = "The provider reports this payment unpaid; nothing to refund. Close it instead."


class PaidAtProvider(GuahaoError):
    code, status = "payment_paid_at_provider", 409
    zh = "支付平台显示该订单已支付,不能关闭,请退款。"
    en = "The provider reports this payment paid; it cannot be closed. Refund it instead."


class PaymentAlreadyResolved(GuahaoError):
    code, status = "payment_already_resolved", 409
    zh = "该支付已处理完毕(已退款、退款中或已关闭)。"
    en = "This payment is already resolved (refunded, refund pending or closed)."


class UnknownPayment(GuahaoError):
    code, status = "payment_unknown", 400
    zh = "找不到该支付订单。"
    en = "No such payment."


class ReportRangeTooLong(GuahaoError):
    code, status = "report_range_too_long", 422
    zh = "查询区间不能超过{days}天。"
    en = "The date range may not exceed {days} days."
