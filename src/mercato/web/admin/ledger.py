"""Back office: the marketplace's money. ``/admin/ledger`` shows every account's balance (debit
positive, credit negative, per currency) and the ledger's check (every entry balances, the
accounts sum to zero); ``/admin/payouts`` lists the payouts recorded and records one, for a
seller and a month, as ``POST /api/admin/payouts`` does (never more than the seller is owed;
the same transfer reference twice is recorded once)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.db import utcnow
from mercato.marketplace import service as marketplace
from mercato.marketplace.schemas import PayoutIn
from mercato.money import format_minor
from mercato.problems import Problem
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.cfg_forms import Errors, problem_errors, read_form, schema_errors, text
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, money, redirect, render

router = APIRouter()

ACCOUNT_WORDS = {
    "customer_clearing": "Customer payments (clearing)",
    "refunds": "Refunds to customers",
    "commission_revenue": "Commission revenue",
    "payouts_clearing": "Payouts to sellers (clearing)",
}
PAYOUT_FIELDS = ("seller_id", "amount", "reference", "period")


@router.get("/ledger", response_class=HTMLResponse)
async def ledger(request: Request, uow: UowDep, _staff: PageStaff) -> HTMLResponse:
    found = await marketplace.ledger_overview(uow)
    return render(
        request, "admin/ledger/index.html", {"ledger": found, "account_words": ACCOUNT_WORDS}
    )


def _payouts_page(
    request: Request,
    found: marketplace.PayoutsPage,
    currency: str,
    values: dict[str, str],
    errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    choices = [("", "Choose a seller")] + [
        (s.id, f"{s.name} (owed {money(found.owed.get(s.id, 0), currency)})")
        for s in found.sellers.values()
    ]
    return render(
        request,
        "admin/ledger/payouts.html",
        {
            "page": found,
            "currency": currency,
            "choices": choices,
            "values": values,
            "errors": errors or {},
        },
        status_code=status_code,
    )


@router.get("/payouts", response_class=HTMLResponse)
async def payouts(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse:
    currency = runtime.settings.currency
    found = await marketplace.payouts_page(uow, currency)
    blank = dict.fromkeys(PAYOUT_FIELDS, "")
    blank["period"] = utcnow().strftime("%Y-%m")
    return _payouts_page(request, found, currency, blank)


def _refusal(problem: Problem, currency: str) -> Errors | None:
    if problem.code == "payout_exceeds_balance":
        owed = max(int(problem.extra.get("payable", 0)), 0)
        return {"amount": f"is more than the seller is owed ({format_minor(owed, currency)})"}
    if problem.code == "idempotency_conflict":
        return {"reference": "was already recorded for another payout"}
    return problem_errors(problem)


@router.post("/payouts", dependencies=[CsrfChecked], response_model=None)
async def record_payout(
    request: Request, uow: UowDep, runtime: RuntimeDep, staff: PageStaff
) -> HTMLResponse | Response:
    currency = runtime.settings.currency
    form = await read_form(request)
    values = {name: text(form, name) for name in PAYOUT_FIELDS}
    data: dict[str, Any] = {k: v for k, v in values.items() if v}
    errors: Errors = {}
    try:
        body = PayoutIn.model_validate(data)
    except ValidationError as exc:
        errors = schema_errors(exc)
    else:
        try:
            async with uow.begin_nested():
                payout = await marketplace.record_payout(
                    uow,
                    seller_id=body.seller_id,
                    amount=marketplace.parse_amount("amount", body.amount, currency),
                    currency=currency,
                    reference=body.reference,
                    period=marketplace.period_of(body.period, None, None),
                    recorded_by=staff.id,
                )
        except Problem as problem:
            refused = _refusal(problem, currency)
            if refused is None:
                raise
            errors = refused
    if errors:
        found = await marketplace.payouts_page(uow, currency)
        return _payouts_page(request, found, currency, values, errors, status_code=422)
    response = redirect("/admin/payouts")
    flash(
        request,
        response,
        f"Payout {payout.reference} of {money(payout.amount, payout.currency)} recorded",
        "success",
    )
    return response
