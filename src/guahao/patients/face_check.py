"""The identity-verification (face check) port and its sandbox provider."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FaceCheckResult:
    passed: bool
    reason: str = ""


class FaceCheckPort(Protocol):
    async def verify(self, *, name: str, id_number: str, liveness_token: str) -> FaceCheckResult: ...


class SandboxFaceCheck:
    """Behaves like a provider without a camera: the client sends a liveness token obtained
    from the provider's SDK; the sandbox accepts "pass" and refuses "fail" or anything else
    that does not start with "pass", so both outcomes can be exercised."""

    async def verify(self, *, name: str, id_number: str, liveness_token: str) -> FaceCheckResult:
        if liveness_token.startswith("pass"):
            return FaceCheckResult(True)
        return FaceCheckResult(False, "face_mismatch")
