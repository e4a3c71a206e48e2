"""Seller portal: stock, ``/seller/stock``. Each offer's units in the seller's warehouse: on
hand, reserved for shoppers' checkouts, and available; setting the available units is the
offer's ``quantity``, changed by one inventory adjustment (``update_offer``, as the API)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from mercato.db import UnitOfWork
from mercato.marketplace import service as marketplace
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.ops_common import parse_int, run_in_unit, with_query
from mercato.web.deps import PageSeller
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, redirect, render

router = APIRouter()

MAX_UNITS = 1_000_000


@router.get("/stock", response_class=HTMLResponse)
async def stock(
    request: Request,
    seller: PageSeller,
    uow: UowDep,
    after: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    page = await marketplace.seller_offer_page(uow, seller.seller_id, after=after or None)
    more = with_query("/seller/stock", after=page.next_after) if page.next_after else None
    return render(request, "seller/stock.html", {"page": page, "more": more})


@router.post("/stock/{offer_id}", dependencies=[CsrfChecked])
async def set_available(
    offer_id: str,
    request: Request,
    seller: PageSeller,
    runtime: RuntimeDep,
    available: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    errors: dict[str, str] = {}
    units = parse_int(available, "available", errors, minimum=0, maximum=MAX_UNITS)
    back = f"/seller/stock#offer-{quote(offer_id, safe='')}"
    if units is None:
        response = redirect(back)
        flash(request, response, f"Available units {errors['available']}.", "error")
        return response

    async def work(uow: UnitOfWork) -> marketplace.OfferInfo:
        patch = marketplace.OfferPatch(quantity=units)
        return await marketplace.update_offer(uow, seller.seller_id, offer_id, patch)

    return await run_in_unit(
        request,
        back,
        runtime,
        work,
        lambda o: f"{o.sku}: {o.available} available",
    )
