"""Seller portal: orders to ship, ``/seller/orders``. The seller's parts of orders, newest
first: what to send (each line with the units shipped and left), where to, and the parcels
sent so far with their tracking. A part with units left has a ship form (carrier, tracking
number) that ships everything of the part not shipped yet, through the same ship-and-capture
workflow as the seller API (``fulfilment.ship_part``): the part's share of the payment is
captured first, and a refused capture ships nothing and says so. Another seller's part is a
404, as if it did not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from mercato.fulfilment import service as fulfilment
from mercato.runtime import RuntimeDep, UowDep
from mercato.text import PlainLine
from mercato.web.admin.ops_common import run_action, with_query
from mercato.web.deps import PageSeller
from mercato.web.security import CsrfChecked
from mercato.web.templating import render

router = APIRouter()

PAGE = 20
Line = Annotated[str, PlainLine(max_length=80), Form()]


@router.get("/orders", response_class=HTMLResponse)
async def orders_to_ship(
    request: Request,
    seller: PageSeller,
    uow: UowDep,
    before: Annotated[str, Query(max_length=40)] = "",
) -> HTMLResponse:
    page = await fulfilment.seller_orders(uow, seller.user, before=before or None, limit=PAGE)
    more = with_query("/seller/orders", before=page.next_before) if page.next_before else None
    return render(
        request,
        "seller/orders.html",
        {"page": page, "more": more, "carriers": fulfilment.carriers()},
    )


@router.post("/orders/{part_id}/ship", dependencies=[CsrfChecked])
async def ship(
    part_id: str,
    request: Request,
    seller: PageSeller,
    runtime: RuntimeDep,
    carrier: Line = "",
    tracking_number: Line = "",
) -> Response:
    """Ship every unit of the part not shipped yet."""
    wanted = fulfilment.ShipmentRequest(
        carrier=carrier.strip(), tracking_number=tracking_number.strip() or None
    )

    async def work() -> fulfilment.ShipmentInfo:
        return await fulfilment.ship_part(runtime, part_id, wanted, user=seller.user)

    return await run_action(
        request,
        f"/seller/orders#part-{part_id}",
        work,
        lambda s: f"Shipped with {s.carrier}, tracking number {s.tracking_number}",
    )
