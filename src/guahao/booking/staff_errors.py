"""Refusals of the back office's booking actions (window, 停诊 ranges)."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class IdentityMismatch(GuahaoError):
    code, status = "identity_mismatch", 409
    zh = "证件号码与该预约的就诊人不符,未签到。请核对证件。"
    en = "The ID number does not match this booking's patient; not checked in. Check the document."


class SuspensionRangeInvalid(GuahaoError):
    code, status = "suspension_range_invalid", 422
    zh = "停诊日期范围有误:结束日期不能早于开始日期,且最长{max_days}天。"
    en = "The leave dates are invalid: the end may not precede the start, and at most {max_days} days."


class NotSuspended(GuahaoError):
    code, status = "schedule_not_suspended", 409
    zh = "该排班未停诊,无需恢复。"
    en = "This session is not suspended; there is nothing to resume."


class WalkInNotLocal(GuahaoError):
    code, status = "walk_in_not_local", 409
    zh = "本院的现场号源由医院信息系统(HIS)管理,请在HIS中办理现场挂号。"
    en = "This hospital's on-site pool is managed by its HIS; register walk-ins there."


class WalkInClosed(GuahaoError):
    code, status = "walk_in_closed", 409
    zh = "只能在就诊当天、该时段结束前为现场患者挂号。"
    en = "Walk-ins can be registered only on the day of the session, before it ends."


class OnsiteFull(GuahaoError):
    code, status = "onsite_full", 409
    zh = "该时段现场号源已满,请选择其他医生或时段。"
    en = "The on-site pool of this session is full; choose another doctor or session."
