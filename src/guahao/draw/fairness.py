"""The draw's arithmetic, pure and small enough to re-implement in any language.

tools/verify_draw.py repeats it without importing guahao; keep the two in step.

- secret: 32 random bytes, hex; `commitment = SHA-256(secret bytes)` is public before the
  draw opens (commit), the secret once entries are closed (reveal).
- root: SHA-256 over the sorted entry receipts joined by "\\n": it fixes the entry list.
- seed: HMAC-SHA256(key = secret bytes, message = "<root>:<draw id>"). The operator cannot pick
  it after seeing the entries (the secret was committed first), and nobody can predict it
  before the window closes (it depends on every receipt).
- rank: entries sorted by HMAC-SHA256(key = seed bytes, message = receipt) ascending (hex
  compare; the receipt breaks a tie that would need a hash collision). A keyed sort, not
  Python's `random.shuffle`, whose algorithm may change between releases.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable


def new_secret() -> str:
    return secrets.token_hex(32)


def new_receipt() -> str:
    return secrets.token_hex(16)


def commitment(secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(secret)).hexdigest()


def entries_root(receipts: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(sorted(receipts)).encode()).hexdigest()


def seed(secret: str, root: str, draw_id: int) -> str:
    return hmac.new(bytes.fromhex(secret), f"{root}:{draw_id}".encode(), hashlib.sha256).hexdigest()


def rank_key(seed_hex: str, receipt: str) -> str:
    return hmac.new(bytes.fromhex(seed_hex), receipt.encode(), hashlib.sha256).hexdigest()


def ranked(seed_hex: str, receipts: Iterable[str]) -> list[str]:
    """The receipts in draw order (first = rank 1)."""
    return sorted(receipts, key=lambda r: (rank_key(seed_hex, r), r))
