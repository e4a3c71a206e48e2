"""Back office: marketplace sellers. ``/admin/sellers`` lists them by status (applied, approved,
suspended); a seller's page shows its profile, its payout reference (masked), its performance
and how many offers it has, with the Approve and Suspend buttons, which call the same
marketplace service functions as the staff API."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from mercato.db import UnitOfWork
from mercato.marketplace import service as marketplace
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.ops_common import run_in_unit, with_query
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.shop.sellers import performance_text, rating_text
from mercato.web.templating import render

router = APIRouter()

STATUS_TABS = (("applied", "Applied"), ("approved", "Approved"), ("suspended", "Suspended"))
STORED_STATUS = {"applied": "pending", "approved": "approved", "suspended": "suspended"}
"""The tab a person reads → the status the marketplace stores ("pending": applied, waiting)."""
STATUS_WORDS = {"pending": "applied", "approved": "approved", "suspended": "suspended"}
VISIBLE_TAIL = 4


def masked(reference: str | None) -> str:
    """Staff recognise a payout reference by its end; the rest is not shown."""
    if not reference:
        return "None given"
    tail = reference[-VISIBLE_TAIL:] if len(reference) > VISIBLE_TAIL * 2 else ""
    return "•" * 8 + tail


def seller_path(seller_id: str) -> str:
    return f"/admin/sellers/{quote(seller_id, safe='')}"


@router.get("/sellers", response_class=HTMLResponse)
async def seller_list(
    request: Request,
    staff: PageStaff,
    uow: UowDep,
    status: Annotated[str, Query(max_length=16)] = "",
) -> Response:
    tab = status if status in STORED_STATUS else ""
    found = await marketplace.list_sellers(uow, status=STORED_STATUS.get(tab))
    return render(
        request,
        "admin/sellers/list.html",
        {
            "sellers": found,
            "tab": tab,
            "tabs": STATUS_TABS,
            "status_words": STATUS_WORDS,
            "tab_href": lambda key: with_query("/admin/sellers", status=key or None),
        },
    )


@router.get("/sellers/{seller_id}", response_class=HTMLResponse)
async def seller_detail(
    seller_id: str, request: Request, staff: PageStaff, uow: UowDep
) -> Response:
    found = await marketplace.seller_for_staff(uow, seller_id)
    seller = found.seller
    return render(
        request,
        "admin/sellers/detail.html",
        {
            "seller": seller,
            "offers": found.offers,
            "active_offers": found.active_offers,
            "payout": masked(seller.payout_reference),
            "status_word": STATUS_WORDS.get(seller.status, seller.status),
            "rating": rating_text(seller.performance),
            "performance": performance_text(seller.performance),
        },
    )


@router.post("/sellers/{seller_id}/approve", dependencies=[CsrfChecked])
async def approve(
    seller_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    async def work(uow: UnitOfWork) -> marketplace.SellerInfo:
        return await marketplace.approve(uow, seller_id)

    return await run_in_unit(
        request,
        seller_path(seller_id),
        runtime,
        work,
        lambda s: f"{s.name} is approved: its offers are shown",
    )


@router.post("/sellers/{seller_id}/suspend", dependencies=[CsrfChecked])
async def suspend(
    seller_id: str,
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    reason: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    async def work(uow: UnitOfWork) -> marketplace.SellerInfo:
        return await marketplace.suspend(uow, seller_id, reason)

    return await run_in_unit(
        request,
        seller_path(seller_id),
        runtime,
        work,
        lambda s: f"{s.name} is suspended: its offers left the shop",
    )
