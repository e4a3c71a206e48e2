"""Marketplace endpoints.

* ``POST /api/sellers/apply`` (signed in), ``GET /api/sellers/{seller_id}`` (public);
* ``/api/seller/offers``: a seller's own offers (staff: everyone's); another seller's offer is
  a 404, as if it did not exist; ``POST /api/seller/offers/import`` takes a CSV body;
* ``/api/admin/sellers``: staff list, approve and suspend sellers;
* ``GET /api/products/{product_id}/offers``: the featured offer and the other sellers' offers
  of each variant, for the shopper's destination.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from mercato.identity.deps import ApiDestination, CurrentUser, StaffUser, require_role
from mercato.identity.service import UserInfo
from mercato.marketplace import service
from mercato.marketplace.schemas import (
    ImportReportOut,
    OfferIn,
    OfferOut,
    OfferPatchIn,
    ProductOffersOut,
    SellerApplicationIn,
    SellerOut,
    SellerPublicOut,
    SuspendIn,
    application,
)
from mercato.openapi import problems
from mercato.runtime import UowDep

router = APIRouter(tags=["marketplace"])

SellerOrStaff = Annotated[UserInfo, Depends(require_role("seller", "staff"))]
OFFERS = "/api/seller/offers"
SellerIdParam = Annotated[str | None, Query(max_length=40, description="Staff only")]
_CSV_BODY = {
    "requestBody": {
        "required": True,
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "description": "UTF-8 CSV, header row first: sku or variant_id, price, shipping, "
        "quantity, handling_days, active",
    }
}


@router.post(
    "/api/sellers/apply", status_code=201, response_model=SellerOut, responses=problems(409)
)
async def apply(body: SellerApplicationIn, uow: UowDep, user: CurrentUser) -> SellerOut:
    """Apply to sell: a pending seller staff will approve or not. Payout details are the
    payment provider's account reference, never a bank account number."""
    return SellerOut.of(await service.apply(uow, user.id, application(body)))


@router.get("/api/sellers/{seller_id}", response_model=SellerPublicOut)
async def get_seller(seller_id: str, uow: UowDep) -> SellerPublicOut:
    """An approved seller's public profile and performance figures."""
    return SellerPublicOut.of(await service.public_seller(uow, seller_id))


@router.get(OFFERS, response_model=list[OfferOut], responses=problems(403))
async def list_offers(
    uow: UowDep,
    user: SellerOrStaff,
    seller_id: SellerIdParam = None,
    after: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[OfferOut]:
    """The caller's offers, oldest first (staff: every seller's, or ``seller_id``'s)."""
    scope = await service.seller_scope(uow, user)
    found = await service.list_offers(uow, scope, seller_id=seller_id, after=after, limit=limit)
    return [OfferOut.of(o) for o in found]


@router.post(OFFERS, status_code=201, response_model=OfferOut, responses=problems(403, 404, 409))
async def create_offer(body: OfferIn, uow: UowDep, user: SellerOrStaff) -> OfferOut:
    """A new offer for a catalog variant, with the units free to sell in the seller's
    warehouse (``quantity``)."""
    scope = await service.seller_scope(uow, user)
    draft = service.OfferDraft(
        price=body.price,
        shipping=body.shipping,
        quantity=body.quantity,
        handling_days=body.handling_days,
        active=body.active,
    )
    created = await service.create_offer(uow, scope, body.sku, draft, seller_id=body.seller_id)
    return OfferOut.of(created)


@router.post(
    f"{OFFERS}/import",
    response_model=ImportReportOut,
    responses=problems(403, 404, 409, 413, 422),
    openapi_extra=_CSV_BODY,
)
async def import_offers(
    request: Request,
    uow: UowDep,
    user: SellerOrStaff,
    mode: Literal["add_update", "partial_update", "replace"] = "add_update",
    seller_id: SellerIdParam = None,
) -> ImportReportOut:
    """Create and change offers from a CSV file: good rows are applied and bad ones reported
    (row number and column); ``mode=replace`` applies all rows or none and takes the offers the
    file does not name off sale."""
    scope = await service.seller_scope(uow, user)
    data = await request.body()
    report = await service.import_offers(uow, scope, data, mode, seller_id=seller_id)
    return ImportReportOut.of(report)


@router.get(f"{OFFERS}/{{offer_id}}", response_model=OfferOut, responses=problems(403))
async def get_offer(offer_id: str, uow: UowDep, user: SellerOrStaff) -> OfferOut:
    scope = await service.seller_scope(uow, user)
    return OfferOut.of(await service.get_offer(uow, scope, offer_id))


@router.patch(f"{OFFERS}/{{offer_id}}", response_model=OfferOut, responses=problems(403, 409))
async def update_offer(
    offer_id: str, body: OfferPatchIn, uow: UowDep, user: SellerOrStaff
) -> OfferOut:
    """Change an offer's price, shipping, handling days, stock or whether it is for sale."""
    scope = await service.seller_scope(uow, user)
    patch = service.OfferPatch(
        price=body.price,
        shipping=body.shipping,
        quantity=body.quantity,
        handling_days=body.handling_days,
        active=body.active,
    )
    return OfferOut.of(await service.update_offer(uow, scope, offer_id, patch))


@router.get("/api/admin/sellers", response_model=list[SellerOut])
async def list_sellers(
    uow: UowDep,
    _: StaffUser,
    status: Literal["pending", "approved", "suspended"] | None = None,
) -> list[SellerOut]:
    """Every seller, the shop itself first, then the newest."""
    return [SellerOut.of(s) for s in await service.list_sellers(uow, status=status)]


@router.post("/api/admin/sellers/{seller_id}/approve", response_model=SellerOut)
async def approve_seller(seller_id: str, uow: UowDep, _: StaffUser) -> SellerOut:
    """Approve a pending (or suspended) seller: its offers show; its applicant's account
    becomes a seller account."""
    return SellerOut.of(await service.approve(uow, seller_id))


@router.post(
    "/api/admin/sellers/{seller_id}/suspend", response_model=SellerOut, responses=problems(409)
)
async def suspend_seller(seller_id: str, body: SuspendIn, uow: UowDep, _: StaffUser) -> SellerOut:
    """Take a seller's offers off the shop, with the reason."""
    return SellerOut.of(await service.suspend(uow, seller_id, body.reason))


@router.get("/api/products/{product_id}/offers", response_model=ProductOffersOut)
async def product_offers(
    product_id: str,
    uow: UowDep,
    destination: ApiDestination,
    sort: Literal["landed_price", "score"] = "landed_price",
) -> ProductOffersOut:
    """Each variant's featured offer (the buy box) and the other eligible sellers' offers,
    for the destination (``?country=``, else the customer's, else the shop's)."""
    found = await service.product_offers(uow, product_id, destination.country, sort=sort)
    return ProductOffersOut.of(product_id, destination.country, sort, found)
