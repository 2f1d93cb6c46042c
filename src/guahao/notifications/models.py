"""Tables of the notifications feature."""
from __future__ import annotations
