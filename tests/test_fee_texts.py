"""The amount a patient pays is 挂号费 + 诊查费; every text that shows it names both parts."""
from __future__ import annotations

import pytest

from guahao.catalog import service as catalog_service
from guahao.core import fees
from guahao.payments.fake import InMemoryPayments
from guahao.scheduling import errors as scheduling_errors
from tests.payments_support import hold, make_world, new_patient, start_payment


class DescribedPayments(InMemoryPayments):
    """Keeps the descriptions the cashier would show."""

    def __init__(self, clock) -> None:
        super().__init__(clock=clock)
        self.descriptions: list[str] = []

    async def create_payment(self, *, description: str, **kwargs) -> str:
        self.descriptions.append(description)
        return await super().create_payment(description=description, **kwargs)


def test_breakdown_in_both_languages():
    assert fees.breakdown(500, 2000) == "挂号费 ¥5.00 + 诊查费 ¥20.00，合计 ¥25.00"
    assert fees.breakdown(500, 2000, "en") == "registration fee ¥5.00 + consultation fee ¥20.00, total ¥25.00"


async def test_the_cashier_shows_both_fees(app, client, db, clock):
    port = DescribedPayments(clock)
    app.state.providers["payments"] = port
    world = await make_world(db, clock)
    account, token, patient = await new_patient(db, clock)
    booking_id = await hold(db, clock, account, patient, world["slot"])

    assert (await start_payment(client, token, booking_id)).status_code == 201

    assert port.descriptions == ["协和医院 心内科 挂号费¥5.00+诊查费¥10.00"]


@pytest.mark.parametrize("error", [
    catalog_service.FeeNotConfigured(registration_level="expert", title="chief"),
    scheduling_errors.FeeNotConfigured(registration_level="expert", title="chief"),
])
def test_refusals_about_fees_name_both_parts(error):
    assert "挂号费" in error.message("zh-CN") and "诊查费" in error.message("zh-CN")
    english = error.message("en")
    assert "registration fee" in english and "consultation fee" in english


def test_the_api_describes_each_fee_field(app):
    schemas = app.openapi()["components"]["schemas"]
    for model, fields in {"BookingRead": ("registration_fee", "consultation_fee", "amount_due"),
                          "ScheduleRead": ("registration_fee", "consultation_fee", "total_fee"),
                          "AvailableSchedule": ("registration_fee", "consultation_fee", "total_fee"),
                          "Fees": ("registration_fee", "consultation_fee", "total"),
                          "PaymentRead": ("amount",), "PaymentStarted": ("amount",)}.items():
        props = schemas[model]["properties"]
        for field in fields:
            description = props[field].get("description", "")
            assert "挂号费" in description or "诊查费" in description, (model, field)
        if "amount_due" in fields or "amount" in fields:
            total = props["amount_due" if "amount_due" in props else "amount"]["description"]
            assert "挂号费 + 诊查费" in total
