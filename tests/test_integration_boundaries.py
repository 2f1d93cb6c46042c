"""STYLE.md habit 1 for the integrations (payments, notifications, his): they use another
feature through its public modules, never its tables. import-linter enforces it (the
`forbidden` contract in pyproject.toml, run by test_code_quality); this test keeps that
contract complete as features are added."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INTEGRATIONS = ("payments", "notifications", "his")


def _contract() -> dict:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "forbidden" and set(contract["source_modules"]) == {
                f"guahao.{name}" for name in INTEGRATIONS}:
            return contract
    raise AssertionError("no forbidden contract for the integrations in pyproject.toml")


def test_integrations_may_not_import_any_other_features_models():
    other_models = {f"guahao.{path.parent.name}.models" for path in (ROOT / "src" / "guahao").glob("*/models.py")
                    if path.parent.name not in INTEGRATIONS}
    assert other_models  # the glob found the features
    missing = other_models - set(_contract()["forbidden_modules"])
    assert not missing, f"add to the contract: {sorted(missing)}"


def test_integrations_may_not_import_bookings_internal_slot_context():
    assert "guahao.booking.context" in _contract()["forbidden_modules"]
