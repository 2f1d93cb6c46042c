"""Refusals of the scheduling feature, each with a stable code (problem+json `code`)."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class SchedulingError(GuahaoError):
    code, status = "scheduling_error", 400


class InvalidBands(SchedulingError):
    code, status = "invalid_bands", 422
    zh = "号源时段设置有误:{reason}。请使用 HH:MM 格式,按时间先后排列,互不重叠,并落在该时段之内。"
    en = "The time bands are invalid: {reason}. Use HH:MM, in order, without overlaps, inside the period."


class BandsNotUsed(SchedulingError):
    code, status = "bands_not_used", 422
    zh = "本院按{granularity}放号,不使用精确时段;请修改医院的放号粒度后再设置时段。"
    en = "This hospital books by {granularity}, not by time band; change its slot granularity first."
    NAMES_ZH = {"day": "整天", "half_day": "半天"}
    NAMES_EN = {"day": "whole day", "half_day": "half day"}

    def message(self, locale: str) -> str:
        granularity = self.params.get("granularity", "")
        names = self.NAMES_EN if locale == "en" else self.NAMES_ZH
        template = self.en if locale == "en" else self.zh
        return template.format(granularity=names.get(granularity, granularity))


class FeeNotConfigured(SchedulingError):
    code, status = "fee_not_configured", 409
    zh = "尚未配置“{registration_level}”号别、职称“{title}”的挂号费和诊查费,请先在医院设置中添加收费标准。"
    en = ("No registration fee and consultation fee are configured for registration level "
          "'{registration_level}' and title '{title}'; add the fee rule in the hospital settings first.")


class ScheduleRangeInvalid(SchedulingError):
    code, status = "schedule_range_invalid", 422
    zh = "日期范围有误:开始日期不得早于今天,结束日期不得早于开始日期,且一次最多 {max_days} 天。"
    en = ("The date range is invalid: it must start today or later, end on or after its start "
          "and span at most {max_days} days.")


class TemplateConflict(SchedulingError):
    code, status = "template_conflict", 409
    zh = "该医生(或科室普通门诊)在同一星期、相互重叠的时段已有排班模板(编号 {template_id})。"
    en = ("A template for the same doctor (or general clinic), weekday and overlapping period already exists "
          "(id {template_id}).")


class DoctorNotInDepartment(SchedulingError):
    code, status = "doctor_not_in_department", 422
    zh = "该医生不属于所选科室,请核对科室后重试。"
    en = "The doctor does not belong to that department; check the department and try again."


class ScheduleNotDraft(SchedulingError):
    code, status = "schedule_not_draft", 409
    zh = "该排班已发布或已停诊,无需再次发布。"
    en = "This schedule is already published or suspended."


class ScheduleNotEditable(SchedulingError):
    code, status = "schedule_not_editable", 409
    zh = "该排班已停诊,不能再修改号源。"
    en = "This schedule is suspended; its slots can no longer be changed."


class ScheduleHasBookings(SchedulingError):
    code, status = "schedule_has_bookings", 409
    zh = "该排班已有患者预约,不能再修改容量或时段;如需调整请先停诊。"
    en = "This schedule already has bookings, so its capacities and bands cannot change; suspend it instead."


class CapacityBelowSold(SchedulingError):
    code, status = "capacity_below_sold", 409
    zh = "{pool_zh}号源已售出或锁定{taken}个,容量不能减到{requested}个以下;可减到至少{taken}个。"
    en = "{taken} seats of the {pool} pool are sold or held; the capacity cannot go below that (asked {requested})."
