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
    """Behaves like a provider without a camera, so both outcomes can be exercised.

    The contract (also in the API description of the verify route and in the README): a
    real client sends the liveness token the provider's SDK returns; the sandbox passes any
    token that starts with "pass" ("pass", "pass-1", ...) and fails every other token with
    reason `face_mismatch`. Name and ID number are not looked at. Anyone who reads this can
    verify anybody, which is why settings refuse the sandbox in production."""

    name = "sandbox"

    async def verify(self, *, name: str, id_number: str, liveness_token: str) -> FaceCheckResult:
        if liveness_token.startswith("pass"):
            return FaceCheckResult(True)
        return FaceCheckResult(False, "face_mismatch")


class FaceCheckNotConfigured(RuntimeError):
    """No identity-verification provider is configured (GUAHAO_FACE_CHECK_PROVIDER=none)."""


class UnconfiguredFaceCheck:
    """`face_check_provider = "none"`: verification is switched off. The patients feature
    turns the exception into its 503 identity_check_unavailable answer."""

    name = "none"

    async def verify(self, *, name: str, id_number: str, liveness_token: str) -> FaceCheckResult:
        raise FaceCheckNotConfigured("no face-check provider configured (GUAHAO_FACE_CHECK_PROVIDER=none)")


def build(provider: str) -> FaceCheckPort:
    if provider == "sandbox":
        return SandboxFaceCheck()
    if provider == "none":
        return UnconfiguredFaceCheck()
    raise ValueError(f"unknown face-check provider {provider!r}")
