"""Typed refusals of catalog changes made through the back office."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class InvalidClinicHours(GuahaoError):
    code, status = "invalid_clinic_hours", 422
    zh = "门诊时间有误:每个时段须先开始后结束,且上午、下午、晚上依次排列、互不重叠({period})。"
    en = ("The clinic hours are invalid: each period must open before it closes, and morning, afternoon "
          "and evening must follow each other without overlap ({period}).")


class PhotoInvalid(GuahaoError):
    code, status = "photo_invalid", 422
    zh = "照片须为 JPEG、PNG 或 WebP 图片。"
    en = "The photo must be a JPEG, PNG or WebP image."


class PhotoTooLarge(GuahaoError):
    code, status = "photo_too_large", 413
    zh = "照片太大:不能超过 {limit_mb} MB。"
    en = "The photo is too large: at most {limit_mb} MB."
