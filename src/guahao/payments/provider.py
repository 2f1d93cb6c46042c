"""Payment provider selection (the payments feature fills this in)."""
from __future__ import annotations

from guahao.config import Settings


def build(settings: Settings):
    return None
