"""Seller portal: the dashboard at ``/seller``. The seller's standing, its 90-day figures
against the buy box's thresholds, its offers and their stock in total, what the shop owes it
and this month's statement so far."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mercato.marketplace import service as marketplace
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.deps import PageSeller
from mercato.web.shop.sellers import percent, rating_text
from mercato.web.templating import render

router = APIRouter()

STATUS_WORDS = {"pending": "waiting for approval", "approved": "approved", "suspended": "suspended"}


def figures(
    performance: marketplace.Performance, thresholds: marketplace.Thresholds
) -> list[dict[str, object]]:
    """Each rate with its threshold, as the seller reads them, and whether it is within."""
    return [
        {"label": label, "value": percent(value), "limit": percent(limit), "ok": value <= limit}
        for label, value, limit in (
            (
                "Order defect rate",
                performance.defect_rate_bp,
                thresholds.max_defect_rate_bp,
            ),
            (
                "Late shipment rate",
                performance.late_shipment_rate_bp,
                thresholds.max_late_shipment_rate_bp,
            ),
            (
                "Pre-fulfilment cancel rate",
                performance.cancel_rate_bp,
                thresholds.max_cancel_rate_bp,
            ),
        )
    ]


@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request, seller: PageSeller, uow: UowDep, runtime: RuntimeDep
) -> HTMLResponse:
    settings = runtime.settings
    found = await marketplace.seller_dashboard(
        uow, seller.seller_id, marketplace.Thresholds.of(settings), settings.currency
    )
    return render(
        request,
        "seller/dashboard.html",
        {
            "d": found,
            "status_word": STATUS_WORDS.get(found.seller.status, found.seller.status),
            "figures": figures(found.seller.performance, found.thresholds),
            "rating": rating_text(found.seller.performance),
        },
    )
