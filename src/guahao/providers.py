"""The outside-world ports of one process (SMS, payments, face check), built from settings."""
from __future__ import annotations

from typing import Any

from guahao.config import Settings


def build_providers(settings: Settings) -> dict[str, Any]:
    from guahao.accounts import sms
    from guahao.patients import face_check
    from guahao.payments import provider as payment_provider

    return {
        "sms": sms.RecordingSms() if settings.sms_provider == "recording" else sms.ConsoleSms(),
        "face_check": face_check.SandboxFaceCheck(),
        "payments": payment_provider.build(settings),
    }
