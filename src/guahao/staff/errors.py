"""Refusals of the staff feature: stable codes, zh-CN and English messages."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class InvalidCredentials(GuahaoError):
    code, status = "invalid_credentials", 401
    zh = "用户名或密码不正确,请检查后重试。"
    en = "Wrong username or password; check them and try again."


class UsernameTaken(GuahaoError):
    code, status = "username_taken", 409
    zh = "用户名“{username}”已被使用,请换一个。"
    en = "The username “{username}” is taken; choose another."


class WeakPassword(GuahaoError):
    code, status = "weak_password", 422
    zh = "密码至少需要{min_length}个字符。"
    en = "The password needs at least {min_length} characters."


class InvalidRole(GuahaoError):
    code, status = "invalid_role", 422
    zh = "未知的角色“{role}”;可选:platform_operator、hospital_admin、scheduler、front_desk。"
    en = "Unknown role “{role}”; use platform_operator, hospital_admin, scheduler or front_desk."


class RoleScope(GuahaoError):
    code, status = "role_scope", 422
    zh = "平台运营人员不属于任何医院;其他角色必须指定所属医院。"
    en = "A platform operator belongs to no hospital; every other role needs a hospital."


class InvalidUsername(GuahaoError):
    code, status = "invalid_username", 422
    zh = "用户名需为3-64个字符,只能包含字母、数字、点、下划线和连字符。"
    en = "A username has 3-64 characters: letters, digits, dots, underscores and hyphens."


class LoginLocked(GuahaoError):
    code, status = "login_locked", 429
    zh = "登录失败次数过多,该账号已暂时锁定,请{minutes}分钟后再试。"
    en = "Too many failed logins: this account is locked; try again in {minutes} minutes."


class OtpRequired(GuahaoError):
    code, status = "otp_required", 401
    zh = "该账号已启用两步验证,请输入验证器应用中的6位动态码。"
    en = "This account uses two-step verification; enter the 6-digit code from your authenticator app."


class InvalidOtp(GuahaoError):
    code, status = "invalid_otp", 401
    zh = "动态码不正确或已使用,请输入验证器应用中最新的6位动态码。"
    en = "The code is wrong or was already used; enter the latest 6-digit code from your authenticator app."


class TotpAlreadyEnabled(GuahaoError):
    code, status = "totp_already_enabled", 409
    zh = "两步验证已启用;如需更换验证器,请先停用。"
    en = "Two-step verification is already on; turn it off first to change the authenticator."


class TotpNotEnrolled(GuahaoError):
    code, status = "totp_not_enrolled", 409
    zh = "尚未开始设置两步验证,请先获取密钥。"
    en = "Two-step verification has not been started; request a secret first."
