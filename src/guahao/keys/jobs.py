"""The re-encryption as a periodic job, so a rotation completes without an operator running
`guahao keys reencrypt` (which stays the way to do it at once and to see the report).

While either keyring holds more than one key (a rotation is under way) each run is a full
pass, values and lookup hashes; otherwise it only looks for values not under the current
data key (old-format rows, a value restored from a backup), which the database finds by
prefix without decrypting anything. Idempotent and committed per batch, so a run cut short
by a crash or a lapsed lease is simply finished by the next one.
"""
from __future__ import annotations

import datetime as dt

from guahao.core import crypto
from guahao.keys import rotation
from guahao.outbox.registry import JobContext, handler, periodic

periodic("keys.reencrypt", dt.timedelta(hours=1))


@handler("keys.reencrypt", timeout=dt.timedelta(hours=1))
async def reencrypt(ctx: JobContext, payload: dict) -> None:
    cipher = crypto.cipher()
    rotating = len(cipher.data_kids) > 1 or len(cipher.index_kids) > 1
    await rotation.reencrypt(ctx.db, values_only=not rotating)
