"""Booking refusals: each a stable code with a message that says what the patient can do."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class TransitionRefused(GuahaoError):
    code, status = "invalid_state", 409
    zh = "挂号单当前状态({state})不允许此操作。"
    en = "This booking is {state}; that action is not possible now."


class SlotNotBookable(GuahaoError):
    code, status = "slot_not_bookable", 409
    zh = "该号源不在线上号池中,请选择其他时段。"
    en = "This slot is not offered online; please choose another time."


class ScheduleNotPublished(GuahaoError):
    code, status = "schedule_not_published", 409
    zh = "该排班尚未开放预约。"
    en = "This clinic is not open for booking."


class ScheduleSuspended(GuahaoError):
    code, status = "schedule_suspended", 409
    zh = "医生已停诊,请选择其他医生或日期。"
    en = "The doctor has cancelled this clinic; please choose another doctor or day."


class NotYetReleased(GuahaoError):
    code, status = "not_yet_released", 409
    zh = "号源将于{release_at_local}开放预约,请届时再来。"
    en = "Booking for this slot opens at {release_at_local}; please come back then."


class ReleaseByDraw(GuahaoError):
    """A schedule released by draw (摇号) takes no holds until its draw has allocated the seats."""
    code, status = "release_by_draw", 409
    zh = "该排班以摇号方式放号，不能直接抢号：请在放号时进入摇号页面登记，结果公布后中签者自动锁号。"
    en = ("This clinic's numbers are released by draw, not first come: enter the draw on its page at release "
          "time; winners get a hold automatically when the result is published.")


class BookingClosed(GuahaoError):
    code, status = "booking_closed", 409
    zh = "该时段已停止线上预约,请到医院窗口挂号。"
    en = "Online booking for this period has closed; please register at the hospital."


class PatientNotVerified(GuahaoError):
    code, status = "patient_not_verified", 409
    zh = "就诊人尚未完成实名认证,请先完成人脸识别认证后再挂号。"
    en = "This patient's identity is not verified yet; complete the face check first."


class DepartmentRestriction(GuahaoError):
    code, status = "department_restriction", 409
    zh = "该科室仅接诊{rule},请为就诊人选择合适的科室。"
    en = "This department only sees {rule_en}; please choose a suitable department."


class RecordRequired(GuahaoError):
    code, status = "record_required", 409
    zh = "该医院要求就诊人已在医院建档,请先到医院办理就诊卡。"
    en = "This hospital requires an existing medical record; please register at the hospital first."


class VisitCardRequired(RecordRequired):
    """`record_required` at a hospital without a HIS connection: its card number is the evidence."""
    zh = "该医院要求就诊人已在医院建档:请在就诊人页面填写该院的就诊卡号,或先到医院办理就诊卡。"
    en = ("This hospital requires an existing medical record: add its visit card number on the patient's page, "
          "or register at the hospital first.")


class HisUnavailable(GuahaoError):
    """The hospital's own system (HIS) did not answer: nothing was booked."""
    code, status = "his_unavailable", 503
    zh = "医院系统暂时无法连接,本次未挂号,请稍后再试。"
    en = "The hospital's system cannot be reached right now; nothing was booked. Please try again shortly."


class Restricted(GuahaoError):
    code, status = "restricted_until", 409
    zh = "因多次取消或爽约,该就诊人在{until_local}前不能在线预约本院。"
    en = "Because of repeated cancellations or no-shows, this patient cannot book online here until {until_local}."


class DuplicateBooking(GuahaoError):
    code, status = "duplicate_booking", 409
    zh = "该就诊人当天在本科室已有预约,同一科室每天限约一个号。"
    en = "This patient already has a booking in this department on that day; one per day is allowed."


class TooManyBookings(GuahaoError):
    code, status = "too_many_bookings", 409
    zh = "该就诊人在本院的有效预约已达{limit}个上限,请就诊或取消后再约。"
    en = "This patient already has {limit} active bookings here, the maximum; visit or cancel one first."


class SlotSoldOut(GuahaoError):
    code, status = "slot_sold_out", 409
    zh = "该时段号源已约满,请选择其他时段或医生。"
    en = "This slot is fully booked; please choose another time or doctor."


class HoldExpired(GuahaoError):
    code, status = "hold_expired", 409
    zh = "锁号已超时,号源已释放,请重新预约。"
    en = "The hold has expired and the slot was released; please book again."


class CancelDeadlinePassed(GuahaoError):
    code, status = "cancel_deadline_passed", 409
    zh = "已过线上取消截止时间({deadline_local}),如需取消请联系医院。"
    en = "The online cancellation deadline ({deadline_local}) has passed; please contact the hospital."


class CheckInRefused(GuahaoError):
    code, status = "check_in_refused", 409
    zh = "只能在就诊当天为已确认的预约签到。"
    en = "Only a confirmed booking can be checked in, on its visit day."

