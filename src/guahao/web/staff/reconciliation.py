"""The operator's reconciliation page (对账): one day's payment ledger against the provider's
bill, with every difference, through `payments.reports.reconcile_day` (the same function as
GET /api/v1/staff/payments/reconciliation)."""
from __future__ import annotations

import datetime as dt

from fastapi import APIRouter

from guahao.core.clock import SHANGHAI
from guahao.core.errors import GuahaoError
from guahao.payments import reports as payment_reports
from guahao.web.staff.base import NAV, OPERATOR, NavItem, StaffPageDep, _, render

router = APIRouter(prefix="/staff/operator", include_in_schema=False)
NAV.append(NavItem("/staff/operator/reconciliation", _("Reconciliation"), (OPERATOR,), hospital=False))


@router.get("/reconciliation")
async def reconciliation(page: StaffPageDep, date: dt.date | None = None):
    page.need(OPERATOR)
    state = page.request.app.state
    # default: yesterday in Beijing time, the last day whose bill is complete
    day = date or (state.clock.now().astimezone(SHANGHAI).date() - dt.timedelta(days=1))
    try:
        report = await payment_reports.reconcile_day(state.db, state.providers.get("payments"), day)
    except GuahaoError as exc:
        return render(page, "staff/operator/reconciliation.html", status=exc.status, day=day, report=None,
                      error=exc.message(page.locale))
    return render(page, "staff/operator/reconciliation.html", day=day, report=report)
