"""GB 11643 resident IDs and the other identity documents: property tests and examples."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guahao.core.idcard import (
    PROVINCE_CODES,
    InvalidIdNumber,
    check_char,
    validate_document,
    validate_hk_macau_permit,
    validate_passport,
    validate_resident_id,
    validate_taiwan_permit,
)

TODAY = dt.date(2026, 11, 19)
ID_CHARS = "0123456789X"


def make_id(province: int, rest_of_area: str, birth: dt.date, sequence: int) -> str:
    body = f"{province:02d}{rest_of_area}{birth:%Y%m%d}{sequence:03d}"
    return body + check_char(body)


@st.composite
def valid_ids(draw) -> tuple[str, dt.date, str]:
    province = draw(st.sampled_from(sorted(PROVINCE_CODES)))
    area = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    birth = draw(st.dates(min_value=dt.date(1880, 1, 1), max_value=TODAY))
    sequence = draw(st.integers(min_value=0, max_value=999))
    number = make_id(province, area, birth, sequence)
    return number, birth, "M" if sequence % 2 else "F"


@given(valid_ids())
def test_every_generated_valid_id_validates_and_round_trips_birth_date_and_sex(case):
    number, birth, sex = case
    rid = validate_resident_id(number, today=TODAY)
    assert (rid.number, rid.birth_date, rid.sex) == (number, birth, sex)


@given(valid_ids(), st.data())
def test_every_single_character_substitution_is_refused_with_the_typed_error(case, data):
    number = case[0]
    position = data.draw(st.integers(min_value=0, max_value=17))
    replacement = data.draw(st.sampled_from([c for c in ID_CHARS if c != number[position]]))
    mutated = number[:position] + replacement + number[position + 1:]
    with pytest.raises(InvalidIdNumber):
        validate_resident_id(mutated, today=TODAY)


def test_all_single_character_substitutions_of_one_id_are_refused():
    # exhaustive for one number: 18 positions x 10 other characters
    number = make_id(11, "0102", dt.date(1990, 3, 7), 123)
    for position in range(18):
        for replacement in ID_CHARS:
            if replacement == number[position]:
                continue
            with pytest.raises(InvalidIdNumber):
                validate_resident_id(number[:position] + replacement + number[position + 1:], today=TODAY)


@settings(max_examples=500)
@given(st.text())
def test_arbitrary_text_raises_only_the_typed_error(text):
    for id_type in ("resident_id", "passport", "hk_macau_permit", "taiwan_permit", "no_such_type"):
        try:
            validate_document(id_type, text, today=TODAY)
        except InvalidIdNumber as exc:
            assert exc.code == "invalid_id_number"
            assert exc.message("en") and exc.message("zh-CN")


@given(st.text(alphabet="0123456789Xx \t", min_size=15, max_size=20))
def test_id_shaped_text_raises_only_the_typed_error(text):
    try:
        validate_resident_id(text, today=TODAY)
    except InvalidIdNumber:
        pass


@pytest.mark.parametrize("value", [None, 123, b"110101199003071234"])
def test_non_string_input_is_refused_with_the_typed_error(value):
    with pytest.raises(InvalidIdNumber):
        validate_resident_id(value, today=TODAY)  # type: ignore[arg-type]


def test_lowercase_x_and_surrounding_whitespace_are_normalised():
    number = _id_ending_in_x()
    rid = validate_resident_id(f"  {number[:-1]}x\n", today=TODAY)
    assert rid.number == number


def test_full_width_digits_from_chinese_imes_are_normalised():
    number = make_id(44, "0305", dt.date(1985, 12, 31), 42)
    full_width = "".join(chr(0xFF10 + int(c)) if c.isdigit() else "Ｘ" for c in number)
    assert validate_resident_id(full_width, today=TODAY).number == number


@pytest.mark.parametrize("area", ["110102", "512501", "512201", "422201"])
def test_county_codes_retired_long_ago_are_accepted(area):
    # 512501, 512201 (Sichuan, before Chongqing split off in 1997) and 422201 (Hubei) are retired;
    # people kept these numbers for life, so they must still validate.
    number = make_id(int(area[:2]), area[2:], dt.date(1968, 5, 4), 17)
    rid = validate_resident_id(number, today=TODAY)
    assert rid.birth_date == dt.date(1968, 5, 4) and rid.sex == "M"


@pytest.mark.parametrize("province", [81, 82, 83])
def test_hong_kong_macau_taiwan_residence_permits_validate(province):
    assert validate_resident_id(make_id(province, "0000", dt.date(2000, 1, 1), 2), today=TODAY).sex == "F"


def test_birth_date_in_the_future_is_refused_and_today_is_accepted():
    tomorrow = TODAY + dt.timedelta(days=1)
    with pytest.raises(InvalidIdNumber) as err:
        validate_resident_id(make_id(11, "0101", tomorrow, 1), today=TODAY)
    assert err.value.params["reason"] == "birth_date"
    assert validate_resident_id(make_id(11, "0101", TODAY, 1), today=TODAY).birth_date == TODAY


def test_birth_date_before_1880_and_impossible_dates_are_refused():
    with pytest.raises(InvalidIdNumber):
        validate_resident_id(make_id(11, "0101", dt.date(1879, 12, 31), 1), today=TODAY)
    body = "11010119990230123"  # 30 February
    with pytest.raises(InvalidIdNumber) as err:
        validate_resident_id(body + check_char(body), today=TODAY)
    assert err.value.params["reason"] == "birth_date"


@pytest.mark.parametrize("province", [99, 10, 16, 20, 40, 55, 70, 80, 84, 91])
def test_unknown_province_codes_are_refused(province):
    with pytest.raises(InvalidIdNumber) as err:
        validate_resident_id(make_id(province, "0101", dt.date(1990, 1, 1), 1), today=TODAY)
    assert err.value.params["reason"] == "province"


def test_refusal_messages_say_what_to_fix_and_never_echo_the_number():
    number = make_id(11, "0101", dt.date(1990, 1, 1), 1)
    wrong = number[:-1] + ("0" if number[-1] != "0" else "1")
    with pytest.raises(InvalidIdNumber) as err:
        validate_resident_id(wrong, today=TODAY)
    assert err.value.params == {"reason": "check_char"}
    assert "check" in err.value.message("en") and "校验" in err.value.message("zh-CN")
    assert wrong not in str(err.value) and wrong not in err.value.message("en")


def test_passport_numbers_are_upper_cased_and_checked():
    assert validate_passport(" e12345678 ") == "E12345678"
    for bad in ["E123", "E1234567890123456789", "E12-345678", "护照12345"]:
        with pytest.raises(InvalidIdNumber):
            validate_passport(bad)


def test_home_return_permits_are_h_or_m_with_8_or_10_digits():
    assert validate_hk_macau_permit("h12345678") == "H12345678"
    assert validate_hk_macau_permit("M1234567890") == "M1234567890"
    for bad in ["H1234567", "H123456789", "X12345678", "12345678", "H١٢٣٤٥٦٧٨"]:
        with pytest.raises(InvalidIdNumber):
            validate_hk_macau_permit(bad)


def test_taiwan_permits_reduce_legacy_forms_to_the_lifelong_number():
    assert validate_taiwan_permit("12345678") == "12345678"
    assert validate_taiwan_permit("1234567801") == "12345678"
    assert validate_taiwan_permit("1234567801(b)") == "12345678"
    for bad in ["1234567", "123456789", "A1234567", "12345678(B)"]:
        with pytest.raises(InvalidIdNumber):
            validate_taiwan_permit(bad)


def test_unknown_document_type_is_refused():
    with pytest.raises(InvalidIdNumber):
        validate_document("driving_licence", "12345678", today=TODAY)


def _id_ending_in_x() -> str:
    for sequence in range(1000):
        number = make_id(11, "0105", dt.date(1979, 8, 21), sequence)
        if number.endswith("X"):
            return number
    raise AssertionError("no sequence gives check character X")
