"""Refusals of the accounts feature: stable codes, zh-CN and English messages."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class InvalidPhone(GuahaoError):
    code, status = "invalid_phone", 422
    zh = "请输入有效的中国大陆手机号码(11位,以1开头)。"
    en = "Enter a valid mainland China mobile number (11 digits starting with 1)."


class CodeInvalid(GuahaoError):
    code, status = "code_invalid", 400
    zh = "验证码不正确,还可以再试{attempts_left}次。"
    en = "That code is not correct; you have {attempts_left} more tries."


class CodeExpired(GuahaoError):
    code, status = "code_expired", 400
    zh = "验证码已过期,请重新获取验证码。"
    en = "That code has expired; request a new code."


class CodeAttemptsExceeded(GuahaoError):
    code, status = "code_attempts_exceeded", 400
    zh = "验证码错误次数过多,已失效,请重新获取验证码。"
    en = "Too many wrong tries; this code no longer works. Request a new code."


class CodeUsed(GuahaoError):
    code, status = "code_used", 400
    zh = "该验证码已使用,请重新获取验证码。"
    en = "That code has already been used; request a new code."


class CodeNotRequested(GuahaoError):
    code, status = "code_not_requested", 400
    zh = "请先获取短信验证码。"
    en = "Request an SMS code first."


class SmsUnavailable(GuahaoError):
    code, status = "sms_unavailable", 503
    zh = "短信发送失败,请稍后重新获取验证码。"
    en = "We could not send the SMS; request a new code in a moment."
