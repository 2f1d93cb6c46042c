"""Refusals of the patients feature. Codes are stable API; messages say what the user can do.

ID number errors are `guahao.core.idcard.InvalidIdNumber` (code `invalid_id_number`).
Params never carry personal values: they end up in problem+json bodies and log lines.
"""
from __future__ import annotations

from guahao.core.errors import GuahaoError


class PatientError(GuahaoError):
    pass


class InvalidName(PatientError):
    code, status = "invalid_name", 422
    zh = "姓名应为1至30个汉字或英文字母,可含间隔号“·”,不能含数字或其他符号。请按证件上的姓名填写。"
    en = ("The name must be 1 to 30 Chinese characters or Latin letters (a middle dot '·' is "
          "allowed), without digits or other symbols; enter it as printed on the ID document.")


class InvalidPhone(PatientError):
    code, status = "invalid_phone", 422
    zh = "请填写有效的中国大陆手机号码(11位,以1开头)。"
    en = "Enter a valid mainland China mobile number (11 digits starting with 1)."


class InvalidCardNumber(PatientError):
    code, status = "invalid_card_number", 422
    zh = "卡号应为4至32位字母、数字或连字符,请按卡面填写;不需要可留空。"
    en = "A card number has 4 to 32 letters, digits or hyphens; copy it from the card, or leave it empty."


class InvalidBirthDate(PatientError):
    code, status = "invalid_birth_date", 422
    zh = "出生日期无效:不能晚于今天,也不能早于1880年。请按证件填写。"
    en = "The birth date is invalid: it cannot be in the future or before 1880; copy it from the ID document."


class BirthDateAndSexRequired(PatientError):
    code, status = "birth_date_and_sex_required", 422
    zh = "使用该证件类型时,请填写出生日期和性别。"
    en = "For this ID document type, enter the birth date and sex."


class DerivedFromIdNumber(PatientError):
    code, status = "derived_from_id_number", 422
    zh = "使用居民身份证时,出生日期和性别由身份证号自动识别,请不要填写。"
    en = "With a resident ID, the birth date and sex are read from the ID number; leave them out."


class IdentityImmutable(PatientError):
    code, status = "identity_immutable", 422
    zh = "证件类型、证件号码、出生日期和性别添加后不能修改。如有错误,请删除该就诊人后重新添加。"
    en = ("The ID type, ID number, birth date and sex cannot be changed once added; if they are "
          "wrong, remove this patient and add them again.")


class TooManyPatients(PatientError):
    code, status = "too_many_patients", 409
    zh = "每个账号最多添加{limit}位就诊人。请先删除不再需要的就诊人后再添加。"
    en = "An account can hold at most {limit} patients; remove one you no longer need, then add again."


class DuplicatePatient(PatientError):
    code, status = "duplicate_patient", 409
    zh = "该证件对应的就诊人已在您的就诊人列表中,无需重复添加。"
    en = "A patient with this ID document is already in your list; there is no need to add them again."


class SelfAlreadyExists(PatientError):
    code, status = "self_already_exists", 409
    zh = "您已添加过关系为“本人”的就诊人。每个账号只能有一位“本人”,请选择其他关系。"
    en = "This account already has a patient whose relationship is 'self'; choose another relationship."


class IdentityCheckFailed(PatientError):
    code, status = "identity_check_failed", 422
    zh = "实名认证未通过:人脸与证件信息不一致。请确认姓名、证件号码无误,由本人在光线充足处重新认证。"
    en = ("Identity verification failed: the face did not match the ID document. Check the name "
          "and ID number, then let the patient retry in good light.")


class IdentityCheckUnavailable(PatientError):
    code, status = "identity_check_unavailable", 503
    zh = "实名认证服务暂时不可用,请稍后重试。"
    en = "The identity verification service is unavailable right now; please try again shortly."


class PatientHasBookings(GuahaoError):
    code, status = "patient_has_bookings", 409
    zh = "该就诊人还有未完成的预约,请先取消或完成就诊后再删除。"
    en = "This patient still has active bookings; cancel them or attend the visits before removing the patient."


class InvalidEmail(PatientError):
    code, status = "invalid_email", 422
    zh = "请填写有效的电子邮箱地址;不需要可留空。"
    en = "Enter a valid e-mail address, or leave it empty."


class HealthConsentRequired(PatientError):
    code, status = "health_consent_required", 422
    zh = "既往病史属于敏感个人信息,需要您单独同意后才能保存;不需要可留空。"
    en = "Medical history is sensitive personal information: it is saved only with your separate consent; or leave it empty."


class TooManyVisitCards(PatientError):
    code, status = "too_many_visit_cards", 409
    zh = "每位就诊人最多保存{limit}张就诊卡,请先删除不用的卡号。"
    en = "A patient can keep at most {limit} visit cards; remove one you no longer use first."
