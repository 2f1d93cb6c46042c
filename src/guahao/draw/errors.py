"""Draw refusals: each a stable code with a message that says what the patient can do."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class NoDraw(GuahaoError):
    code, status = "no_draw", 404
    zh = "该排班不以摇号方式放号。"
    en = "This clinic's numbers are not released by draw."


class DrawNotOpen(GuahaoError):
    code, status = "draw_not_open", 409
    zh = "摇号登记将于{opens_at_local}开始，请届时再来。"
    en = "Entries for this draw open at {opens_at_local}; please come back then."


class DrawClosed(GuahaoError):
    code, status = "draw_closed", 409
    zh = "摇号登记已于{closes_at_local}截止，结果公布后可查看。"
    en = "Entries for this draw closed at {closes_at_local}; the result will be published shortly."


class DrawPatientNotVerified(GuahaoError):
    code, status = "patient_not_verified", 409
    zh = "就诊人尚未完成实名认证，实名认证后才能参加摇号。"
    en = "This patient's identity is not verified yet; only verified patients can enter the draw."


class ReleaseModeFrozen(GuahaoError):
    code, status = "release_mode_frozen", 409
    zh = "该排班的放号（或摇号登记）已经开始，不能再更改放号方式。"
    en = "This clinic's release (or its draw) has already begun; its release mode can no longer change."


class DrawNeedsLocalHolds(GuahaoError):
    code, status = "draw_not_available", 409
    zh = "实时对接医院系统（HIS）的医院由医院系统决定号源，不能使用摇号放号。"
    en = "At a hospital whose HIS decides every hold in real time, numbers cannot be released by draw."


class AuditNotYet(GuahaoError):
    code, status = "draw_not_drawn", 409
    zh = "摇号尚未开奖，审计记录将于{result_at_local}后公布。"
    en = "The draw has not been held yet; its audit record is published after {result_at_local}."
