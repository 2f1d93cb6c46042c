"""Payment provider selection.

Settings read here (through getattr, so that this works before and after they exist in
config.py): `payment_provider` ("paysim" | "fake" | "none"), `paysim_url`, `paysim_key`,
`payment_timeout_seconds`, `payment_notify_base_url`. "paysim" is the sandbox process
(`guahao paysim`, the embedded default); "fake" the in-memory provider for tests (as
`sms_provider = "recording"`). Real providers (WeChat Pay, Alipay) plug in here behind the
same port.

Outside development and the test suite, `build` refuses the published sandbox key and the
fake provider: it runs when the app or a worker builds its providers, so such a process
stops at startup with a clear message instead of accepting forged notifications.
"""
from __future__ import annotations

from guahao.config import Settings
from guahao.payments.port import PaymentPort

DEV_PAYSIM_KEY = "paysim-dev-key"
DEFAULT_PAYSIM_URL = "http://127.0.0.1:8100"
# environments that may sign and verify with the key published in this repository: a
# developer's machine and the automated test suite, which never take real money
SANDBOX_KEY_ENVS = ("development", "test")


class PaymentConfigError(ValueError):
    """The payment settings are unsafe for this environment; the process refuses to start."""


def build(settings: Settings) -> PaymentPort | None:
    kind = getattr(settings, "payment_provider", None) or ("paysim" if getattr(settings, "paysim_url", None) else None)
    key = getattr(settings, "paysim_key", None) or DEV_PAYSIM_KEY
    env = getattr(settings, "env", "development")
    if kind in ("paysim", "fake") and key == DEV_PAYSIM_KEY and env not in SANDBOX_KEY_ENVS:
        # anyone can sign a notification with the published key and so confirm an unpaid booking
        raise PaymentConfigError(f"GUAHAO_PAYSIM_KEY is the published development key ({DEV_PAYSIM_KEY!r}); "
                                 f"set a secret key or GUAHAO_PAYMENT_PROVIDER=none in {env}")
    if kind == "fake" and env not in SANDBOX_KEY_ENVS:
        raise PaymentConfigError(f"the in-memory fake payment provider is for tests; refused in {env}")
    if kind == "fake":
        from guahao.payments.fake import InMemoryPayments

        return InMemoryPayments(key=key)
    if kind == "paysim":
        from guahao.payments.paysim_client import SandboxPayments

        return SandboxPayments(getattr(settings, "paysim_url", None) or DEFAULT_PAYSIM_URL, key,
                               timeout=float(getattr(settings, "payment_timeout_seconds", None) or 5.0))
    return None


def notify_url(settings: Settings, provider_name: str) -> str:
    base = getattr(settings, "payment_notify_base_url", None) or settings.base_url
    return f"{base.rstrip('/')}/api/v1/payments/notify/{provider_name}"


def return_url(settings: Settings, booking_id: int) -> str:
    return f"{settings.base_url.rstrip('/')}/bookings/{booking_id}"
