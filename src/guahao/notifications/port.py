"""The notification port: one templated SMS, carrying our dedupe key as the gateway's out id.

The accounts feature's `SmsPort.send(phone, template, params)` (login codes) has no room for
an out id, and its console provider prints parameters rather than the text the patient reads.
Notifications need both, so they talk to this richer port; `from_providers` adapts whatever
the process set up:

- `providers["notifications"]`, when present, is used as is (a real gateway client passes
  `out_id` as Aliyun's OutId / Tencent's SessionContext and the gateway drops a repeat);
- the console SMS provider becomes `ConsoleNotifier` (masked number, rendered text);
- any other `SmsPort` (the recording provider in tests) is wrapped by `SmsPortAdapter`,
  which sends the per-language template id and the parameters and loses only the out id.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from guahao.accounts.sms import ConsoleSms, SmsPort
from guahao.core.crypto import mask_phone
from guahao.notifications import templates


@dataclass(frozen=True)
class Sms:
    phone: str  # E.164
    template: str  # our template code, e.g. "booking_confirmed"
    params: dict[str, str]
    locale: str
    out_id: str  # our dedupe key: the gateway may use it to drop a repeat of this message

    @property
    def gateway_template(self) -> str:
        return templates.gateway_id(self.template, self.locale)

    @property
    def text(self) -> str:
        return templates.render(self.template, self.params, self.locale)


class SmsRejected(Exception):
    """The gateway refused this message for good (invalid number, template not approved):
    sending it again cannot succeed."""


class NotificationPort(Protocol):
    async def send(self, sms: Sms) -> None:
        """Hand the message to the gateway; raise on failure (SmsRejected when final)."""


@dataclass
class SmsPortAdapter:
    """Sends through a plain `SmsPort` (template id + parameters; no out id)."""

    sms: SmsPort

    async def send(self, sms: Sms) -> None:
        await self.sms.send(sms.phone, sms.gateway_template, sms.params)


class ConsoleNotifier:
    """Development: prints what the patient would read, to a masked number."""

    async def send(self, sms: Sms) -> None:
        print(f"[sms] to {mask_phone(sms.phone)} template={sms.gateway_template} out_id={sms.out_id}: {sms.text}",
              file=sys.stderr, flush=True)


class UnconfiguredNotifier:
    """`sms_provider = "none"`: a message cannot be sent, and retrying will not change that,
    so it fails for good (recorded as failed, visible to operators) rather than retried."""

    async def send(self, sms: Sms) -> None:
        raise SmsRejected("no SMS gateway configured (GUAHAO_SMS_PROVIDER=none)")


@dataclass
class RecordingNotifier:
    """Tests: keeps every message, out id and locale included."""

    sent: list[Sms] = field(default_factory=list)

    async def send(self, sms: Sms) -> None:
        self.sent.append(sms)


def from_providers(providers: dict[str, Any]) -> NotificationPort:
    explicit = providers.get("notifications")
    if explicit is not None:
        return explicit
    sms = providers.get("sms")
    if sms is None:
        raise RuntimeError("no SMS provider configured (providers['sms'] or providers['notifications'])")
    if isinstance(sms, ConsoleSms):
        return ConsoleNotifier()
    return SmsPortAdapter(sms)
