"""Marketplace endpoints.

* ``POST /api/sellers/apply`` (signed in), ``GET /api/sellers/{seller_id}`` (public);
* ``/api/seller/offers``: a seller's own offers (staff: everyone's); another seller's offer is
  a 404, as if it did not exist; ``POST /api/seller/offers/import`` takes a CSV body;
* ``/api/admin/sellers``: staff list, approve and suspend sellers;
* ``GET /api/products/{product_id}/offers``: the featured offer and the other sellers' offers
  of each variant, for the shopper's destination;
* ``/api/admin/commission-rules``: staff list, create and deactivate commission rules;
  ``POST /api/admin/payouts`` records money paid out to a seller;
* ``GET /api/seller/statements``: a seller's own statements (staff: anyone's).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request

from mercato.identity.deps import ApiDestination, CurrentUser, StaffUser, require_role
from mercato.identity.service import UserInfo
from mercato.marketplace import service
from mercato.marketplace.schemas import (
    CommissionRuleIn,
    CommissionRuleOut,
    ImportReportOut,
    Month,
    OfferIn,
    OfferOut,
    OfferPatchIn,
    PayoutIn,
    PayoutOut,
    ProductOffersOut,
    SellerApplicationIn,
    SellerOut,
    SellerPublicOut,
    StatementOut,
    SuspendIn,
    application,
    rule_draft,
)
from mercato.openapi import problems
from mercato.runtime import RuntimeDep, UowDep

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


RULES = "/api/admin/commission-rules"


@router.get(RULES, response_model=list[CommissionRuleOut])
async def list_commission_rules(
    uow: UowDep,
    _: StaffUser,
    seller_id: Annotated[str | None, Query(max_length=40)] = None,
    include_inactive: bool = False,
) -> list[CommissionRuleOut]:
    """Commission rules, most specific scope first (``seller_id``: those that may apply to
    that seller's sales)."""
    found = await service.list_rules(uow, seller_id=seller_id, include_inactive=include_inactive)
    return [CommissionRuleOut.of(r) for r in found]


@router.post(RULES, status_code=201, response_model=CommissionRuleOut, responses=problems(409))
async def create_commission_rule(
    body: CommissionRuleIn, uow: UowDep, user: StaffUser, runtime: RuntimeDep
) -> CommissionRuleOut:
    """A commission rule: a percentage of each sale's gross, with an optional minimum and
    maximum, for a seller and/or a category (neither: the default), valid from ``valid_from``
    until ``valid_to``. Precedence: seller + category, seller, category, default. An active
    rule of the same scope and currency valid at an overlapping time: 409
    ``commission_rule_overlap``."""
    draft = rule_draft(body, runtime.settings.currency)
    return CommissionRuleOut.of(await service.create_rule(uow, draft, user.id))


@router.delete(f"{RULES}/{{rule_id}}", response_model=CommissionRuleOut)
async def deactivate_commission_rule(rule_id: str, uow: UowDep, _: StaffUser) -> CommissionRuleOut:
    """Take a rule out of force (it stays listed with ``include_inactive``: sales priced by it
    keep its terms)."""
    return CommissionRuleOut.of(await service.deactivate_rule(uow, rule_id))


@router.post(
    "/api/admin/payouts", status_code=201, response_model=PayoutOut, responses=problems(404, 409)
)
async def record_payout(
    body: PayoutIn, uow: UowDep, user: StaffUser, runtime: RuntimeDep
) -> PayoutOut:
    """Record money paid out to a seller for a period (``period`` as a month, or
    ``period_from`` and ``period_to``). More than the seller is owed: 409
    ``payout_exceeds_balance``. The same ``reference`` again: the payout already recorded."""
    currency = body.currency or runtime.settings.currency
    payout = await service.record_payout(
        uow,
        seller_id=body.seller_id,
        amount=service.parse_amount("amount", body.amount, currency),
        currency=currency,
        reference=body.reference,
        period=service.period_of(body.period, body.period_from, body.period_to),
        recorded_by=user.id,
    )
    return PayoutOut.of(payout)


@router.get(
    "/api/seller/statements", response_model=list[StatementOut], responses=problems(403, 404)
)
async def statements(
    uow: UowDep,
    user: SellerOrStaff,
    runtime: RuntimeDep,
    period: Annotated[Month | None, Query(description="A month, e.g. 2026-11")] = None,
    first: Annotated[date | None, Query(alias="from", description="First day")] = None,
    last: Annotated[date | None, Query(alias="to", description="Last day, included")] = None,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
    seller_id: SellerIdParam = None,
) -> list[StatementOut]:
    """The caller's statement for the period (this month by default): sales, refunds,
    cancellations, commission, net, payouts, and what it was owed at either end. Staff: any
    seller's (``seller_id``), or every seller's with entries."""
    scope = await service.seller_scope(uow, user)
    found = await service.seller_statements(
        uow,
        scope,
        seller_id,
        service.period_of(period, first, last),
        currency or runtime.settings.currency,
    )
    return [StatementOut.of(s) for s in found]
