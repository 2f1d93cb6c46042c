"""The SMS port and its development/test providers. Real gateways plug in here later."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Protocol

from guahao.core.crypto import mask_phone


class SmsPort(Protocol):
    async def send(self, phone: str, template: str, params: dict[str, str]) -> None: ...


@dataclass
class SentSms:
    phone: str
    template: str
    params: dict[str, str]


class ConsoleSms:
    """Prints messages to the terminal for local development (the code is the point of it,
    so it is printed; the phone number is masked)."""

    async def send(self, phone: str, template: str, params: dict[str, str]) -> None:
        print(f"[sms] to {mask_phone(phone)} template={template} params={params}", file=sys.stderr, flush=True)


class SmsNotConfigured(RuntimeError):
    """No SMS gateway is configured (GUAHAO_SMS_PROVIDER=none)."""


class UnconfiguredSms:
    """`sms_provider = "none"`: every send fails, so a login-code request answers 503
    sms_unavailable instead of pretending a code went out."""

    async def send(self, phone: str, template: str, params: dict[str, str]) -> None:
        raise SmsNotConfigured("no SMS gateway configured (GUAHAO_SMS_PROVIDER=none)")


@dataclass
class RecordingSms:
    """Keeps every message in memory so tests can read the code that was sent."""

    sent: list[SentSms] = field(default_factory=list)

    async def send(self, phone: str, template: str, params: dict[str, str]) -> None:
        self.sent.append(SentSms(phone, template, dict(params)))

    def last_code(self, phone: str) -> str:
        for message in reversed(self.sent):
            if message.phone == phone and "code" in message.params:
                return message.params["code"]
        raise LookupError("no code sent to that number")
