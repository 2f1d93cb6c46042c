"""How a fee is named to people: always both parts.

What a patient pays for a visit is the 挂号费 (registration fee) plus the 诊查费
(consultation fee); calling the sum 挂号费 misstates what the money is for. Every text that
shows an amount (SMS, payment descriptions, API field descriptions) takes its wording here.
Amounts are integer fen.
"""
from __future__ import annotations

REGISTRATION_FEE = "挂号费 (registration fee), in fen"
CONSULTATION_FEE = "诊查费 (consultation fee), in fen"
TOTAL_FEE = "合计 (total): 挂号费 + 诊查费, in fen"


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def breakdown(registration_fee: int, consultation_fee: int, locale: str = "zh-CN") -> str:
    """`挂号费 ¥5.00 + 诊查费 ¥20.00，合计 ¥25.00` / `registration fee ¥5.00 + consultation fee
    ¥20.00, total ¥25.00`."""
    total = registration_fee + consultation_fee
    if locale == "en":
        return (f"registration fee ¥{yuan(registration_fee)} + consultation fee ¥{yuan(consultation_fee)}, "
                f"total ¥{yuan(total)}")
    return f"挂号费 ¥{yuan(registration_fee)} + 诊查费 ¥{yuan(consultation_fee)}，合计 ¥{yuan(total)}"


def parts(registration_fee: int, consultation_fee: int) -> str:
    """The short form for a payment description (providers cap its length): `挂号费+诊查费`
    with the amounts, no total (the provider shows the amount itself)."""
    return f"挂号费¥{yuan(registration_fee)}+诊查费¥{yuan(consultation_fee)}"
