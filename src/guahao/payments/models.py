"""Tables of the payments feature."""
from __future__ import annotations
