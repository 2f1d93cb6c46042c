"""Refusals of the job operations API."""
from __future__ import annotations

from guahao.core.errors import GuahaoError, NotFound


class JobNotFound(NotFound):
    def __init__(self, **params) -> None:
        super().__init__("job", **params)

    def message(self, locale: str) -> str:
        return "That job does not exist." if locale == "en" else "找不到该后台任务。"


class JobNotDead(GuahaoError):
    code, status = "job_not_dead", 409
    zh = "只有失败(死信)状态的任务可以重试;该任务当前状态为 {state}。"
    en = "Only dead-lettered jobs can be retried; this one is {state}."
