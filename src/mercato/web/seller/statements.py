"""Seller portal: statements, ``/seller/statements``. One row per calendar month (UTC, the
last twelve, newest first): sales, refunds and cancellations, commission, net, payouts and
what the shop owed the seller at the month's end, read from the marketplace's ledger."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mercato.marketplace import service as marketplace
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.deps import PageSeller
from mercato.web.templating import render

router = APIRouter()


@router.get("/statements", response_class=HTMLResponse)
async def statements(
    request: Request, seller: PageSeller, uow: UowDep, runtime: RuntimeDep
) -> HTMLResponse:
    currency = runtime.settings.currency
    found = await marketplace.monthly_statements(uow, seller.seller_id, currency)
    return render(request, "seller/statements.html", {"statements": found, "currency": currency})
