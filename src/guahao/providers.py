"""The outside-world ports of one process (SMS, payments, face check), built from settings."""
from __future__ import annotations

from typing import Any

from guahao.config import Settings


def build_providers(settings: Settings) -> dict[str, Any]:
    from guahao.accounts import sms
    from guahao.booking import queries as booking_queries
    from guahao.notifications import port as notifications_port
    from guahao.patients import face_check
    from guahao.payments import provider as payment_provider

    return {
        "sms": sms.RecordingSms() if settings.sms_provider == "recording" else sms.ConsoleSms(),
        # booking messages carry our dedupe key (out_id) so a gateway can drop a repeat
        "notifications": notifications_port.RecordingNotifier() if settings.sms_provider == "recording"
        else notifications_port.ConsoleNotifier(),
        "face_check": face_check.SandboxFaceCheck(),
        "payments": payment_provider.build(settings),
        # not an outside system: booking answering a question of a feature below it
        "bookings": booking_queries,
    }
