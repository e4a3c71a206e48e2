"""Seller portal: returns, ``/seller/returns``. The returns sending back the seller's goods,
newest first (by status when asked): the return, the order part, the seller's own lines, the
status and the seller's share of the refund. Read-only: the shop's staff decide, receive and
refund returns (the goods come back to the shop); another seller's return is not listed, and
its page is a 404 as if it did not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from mercato.problems import not_found
from mercato.returns import service as returns
from mercato.runtime import UowDep
from mercato.web.deps import PageSeller
from mercato.web.templating import render

router = APIRouter()

STATUS_LABELS = {
    "requested": "Requested",
    "approved": "Approved, on its way back",
    "rejected": "Rejected",
    "received": "Received, refund pending",
    "refunded": "Refunded",
}


@router.get("/returns", response_class=HTMLResponse)
async def return_list(
    request: Request,
    seller: PageSeller,
    uow: UowDep,
    status: Annotated[str, Query(max_length=16)] = "",
) -> HTMLResponse:
    found = await returns.seller_returns(uow, seller.seller_id, status=status or None, limit=100)
    context = {"returns": found, "status": status, "labels": STATUS_LABELS, "one": False}
    return render(request, "seller/returns.html", context)


@router.get("/returns/{return_id}", response_class=HTMLResponse)
async def return_page(
    request: Request, return_id: str, seller: PageSeller, uow: UowDep
) -> HTMLResponse:
    found = await returns.seller_return(uow, seller.seller_id, return_id)
    if found is None:
        raise not_found("Return", return_id)
    context = {"returns": [found], "status": "", "labels": STATUS_LABELS, "one": True}
    return render(request, "seller/returns.html", context)
