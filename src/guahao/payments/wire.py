"""The notification wire format shared by the sandbox (which signs) and our client (which
verifies), modelled on WeChat Pay API v3 callbacks.

Headers: Wechatpay-Timestamp (unix seconds), Wechatpay-Nonce, Wechatpay-Serial (which key)
and Wechatpay-Signature = base64(HMAC-SHA256(key, "<timestamp>\\n<nonce>\\n<body>\\n")).
The body is JSON: {id, create_time, event_type, resource: {out_trade_no, transaction_id,
trade_state, amount: {total, currency}, success_time}}. WeChat signs with RSA and encrypts the
resource; a shared HMAC key keeps the sandbox simple while testing the same properties: any
change to the body, the timestamp or the nonce breaks the signature.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

from guahao.payments.port import Notification, NotificationRejected, ProviderPayment

H_TIMESTAMP = "Wechatpay-Timestamp"
H_NONCE = "Wechatpay-Nonce"
H_SIGNATURE = "Wechatpay-Signature"
H_SERIAL = "Wechatpay-Serial"
WINDOW = dt.timedelta(minutes=5)
CST = dt.timezone(dt.timedelta(hours=8))


def key_serial(key: str) -> str:
    """A public name for a key (lets a deployment rotate keys without guessing)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16].upper()


def signature(key: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body + b"\n"
    return base64.b64encode(hmac.new(key.encode(), message, hashlib.sha256).digest()).decode()


def sign(key: str, body: bytes, *, at: dt.datetime, nonce: str | None = None) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    nonce = nonce or secrets.token_hex(16)
    return {H_TIMESTAMP: timestamp, H_NONCE: nonce, H_SERIAL: key_serial(key),
            H_SIGNATURE: signature(key, timestamp, nonce, body), "Content-Type": "application/json"}


def verify(key: str, headers: Mapping[str, str], body: bytes, *, now: dt.datetime) -> None:
    """Raise NotificationRejected unless `body` was signed with `key` within the window."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        timestamp = lowered[H_TIMESTAMP.lower()]
        nonce = lowered[H_NONCE.lower()]
        given = lowered[H_SIGNATURE.lower()]
        serial = lowered.get(H_SERIAL.lower(), key_serial(key))
    except KeyError:
        raise NotificationRejected("signature_missing") from None
    if serial != key_serial(key):
        raise NotificationRejected("unknown_key")
    # constant-time comparison: the signature is a secret-derived value
    if not hmac.compare_digest(signature(key, timestamp, nonce, body), given):
        raise NotificationRejected("signature_invalid")
    try:
        signed_at = dt.datetime.fromtimestamp(int(timestamp), dt.UTC)
    except (ValueError, OverflowError):
        raise NotificationRejected("malformed") from None
    # a replay of a genuine old message: same signature, outside the window
    if abs(now - signed_at) > WINDOW:
        raise NotificationRejected("timestamp_out_of_window")


def iso(at: dt.datetime) -> str:
    return at.astimezone(CST).isoformat(timespec="seconds")


def parse_time(value: Any) -> dt.datetime | None:
    if value in (None, ""):
        return None
    parsed = dt.datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        raise ValueError("naive time")
    return parsed.astimezone(dt.UTC)


def payment_json(payment: ProviderPayment) -> dict[str, Any]:
    return {"out_trade_no": payment.out_trade_no, "transaction_id": payment.txn_id,
            "trade_state": payment.trade_state, "amount": {"total": payment.amount, "currency": "CNY"},
            "success_time": iso(payment.paid_at) if payment.paid_at else None}


def parse_payment(data: Mapping[str, Any]) -> ProviderPayment:
    amount = data["amount"]["total"]
    if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
        raise ValueError("amount")
    return ProviderPayment(out_trade_no=str(data["out_trade_no"]), trade_state=data["trade_state"],
                           amount=amount, txn_id=data.get("transaction_id") or None,
                           paid_at=parse_time(data.get("success_time")))


def notification_body(notification_id: str, event_type: str, payment: ProviderPayment, *, at: dt.datetime) -> bytes:
    body = {"id": notification_id, "create_time": iso(at), "event_type": event_type,
            "resource_type": "transaction", "resource": payment_json(payment)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def parse_notification(body: bytes) -> Notification:
    try:
        data = json.loads(body)
        notification = Notification(id=str(data["id"]), event_type=str(data["event_type"]),
                                    payment=parse_payment(data["resource"]))
    except (ValueError, KeyError, TypeError):
        raise NotificationRejected("malformed") from None
    if not notification.id or len(notification.id) > 64:
        raise NotificationRejected("malformed")
    return notification
