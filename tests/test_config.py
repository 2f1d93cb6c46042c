"""Settings refuse development keys outside development; locale negotiation; log scrubbing."""
import base64
import os

import pytest
from pydantic import ValidationError

from guahao.config import Settings
from guahao.core.i18n import negotiate
from guahao.core.logging import scrub


def test_placeholder_secrets_are_refused_in_production():
    with pytest.raises(ValidationError, match="placeholder secrets refused"):
        Settings(env="production")


def test_real_secrets_are_accepted_in_production():
    key = base64.b64encode(os.urandom(32)).decode()
    s = Settings(env="production", data_key=key, index_key=base64.b64encode(os.urandom(32)).decode(),
                 secret_key="a-real-secret-from-the-vault", sms_provider="none", face_check_provider="none",
                 payment_provider="none")
    assert s.env == "production"


def test_keys_must_be_32_bytes():
    with pytest.raises(ValidationError):
        Settings(data_key=base64.b64encode(b"short").decode())


@pytest.mark.parametrize("header,expected", [
    (None, "zh-CN"), ("en-US,en;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"),
    ("fr-FR, en;q=0.5", "en"), ("en;q=0.3, zh;q=0.7", "zh-CN"), ("*", "zh-CN"), ("garbage;;q=x", "zh-CN"),
])
def test_accept_language_negotiation(header, expected):
    assert negotiate(header) == expected


def test_log_scrubber_masks_id_numbers_and_mobiles():
    line = scrub("id=11010519491231002X phone=+8613812345678 other=13912345678")
    assert "11010519491231002X" not in line and "13812345678" not in line and "13912345678" not in line
    assert "138****5678" in line
