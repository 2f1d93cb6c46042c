"""Waitlist (候补) refusals: each a stable code with a message that says what the patient can do."""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class SeatsAvailable(GuahaoError):
    code, status = "waitlist_seats_available", 409
    zh = "该排班仍有号源,请直接预约,无需候补。"
    en = "This clinic still has free slots; book one directly, no waitlist needed."


class AlreadyWaiting(GuahaoError):
    code, status = "waitlist_duplicate", 409
    zh = "该就诊人已在此排班的候补队列中(同一就诊人在不同账号下也只能候补一次)。"
    en = "This patient is already on this clinic's waitlist (once per person, whichever account)."


class TooManyEntries(GuahaoError):
    code, status = "waitlist_limit", 409
    zh = "每位就诊人在本院最多同时候补{limit}个排班,请先退出其他候补。"
    en = "A patient may wait for at most {limit} clinics at this hospital at once; leave another waitlist first."


class AlreadyBooked(GuahaoError):
    code, status = "waitlist_already_booked", 409
    zh = "该就诊人已预约此排班,无需候补。"
    en = "This patient already has a booking for this clinic."


class WaitlistClosed(GuahaoError):
    code, status = "waitlist_closed", 409
    zh = "该排班的候补已截止(截止时间{cutoff_local}),请选择其他日期。"
    en = "The waitlist for this clinic closed at {cutoff_local}; please choose another day."


class WaitlistUnavailable(GuahaoError):
    code, status = "waitlist_unavailable", 409
    zh = "该排班暂不支持候补。"
    en = "This clinic has no waitlist."


class EntryEnded(GuahaoError):
    code, status = "waitlist_entry_ended", 409
    zh = "该候补已结束,无需退出。"
    en = "This waitlist entry has already ended."
