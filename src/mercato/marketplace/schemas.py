"""What the marketplace's endpoints take and answer. Amounts are decimal strings."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from mercato.inventory.service import MAX_QUANTITY, low_stock_hint
from mercato.marketplace import service
from mercato.marketplace.models import MAX_HANDLING_DAYS
from mercato.money import DecimalStr, format_minor
from mercato.openapi import WholeNumber
from mercato.text import PlainLine, PlainText

Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]
Stock = Annotated[int, Field(ge=0, le=MAX_QUANTITY, strict=True), WholeNumber]
HandlingDays = Annotated[int, Field(ge=0, le=MAX_HANDLING_DAYS, strict=True), WholeNumber]
Ref = Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=64)]
Flag = Annotated[bool, Field(strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SellerApplicationIn(_Strict):
    name: Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=100)]
    legal_name: Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=200)]
    email: Annotated[str, PlainLine(strip_whitespace=True, min_length=3, max_length=254)]
    country: Country
    ship_to: Annotated[list[Country], Field(min_length=1, max_length=60)]
    description: Annotated[str, PlainText(max_length=2000)] = ""
    payout_reference: Annotated[str, PlainLine(min_length=3, max_length=80)] | None = Field(
        default=None,
        description="The payment provider's reference of the payout account (never a bank "
        "account number)",
    )


class SuspendIn(_Strict):
    reason: Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=200)]


class PerformanceOut(BaseModel):
    orders_counted: int
    defect_rate_bp: int
    late_shipment_rate_bp: int
    cancel_rate_bp: int
    rating: str | None = Field(description='Mean rating of the buyers\' reviews, e.g. "4.50"')
    rating_count: int
    computed_at: datetime | None
    buy_box_eligible: bool

    @classmethod
    def of(cls, p: service.Performance) -> PerformanceOut:
        return cls(
            orders_counted=p.orders_counted,
            defect_rate_bp=p.defect_rate_bp,
            late_shipment_rate_bp=p.late_shipment_rate_bp,
            cancel_rate_bp=p.cancel_rate_bp,
            rating=None if p.rating_x100 is None else format_minor(p.rating_x100, "EUR"),
            rating_count=p.rating_count,
            computed_at=p.computed_at,
            buy_box_eligible=p.eligible,
        )


class SellerPublicOut(BaseModel):
    """What anyone may see of an approved seller."""

    id: str
    name: str
    legal_name: str
    country: str
    description: str
    is_house: bool
    since: datetime
    performance: PerformanceOut

    @classmethod
    def of(cls, s: service.SellerInfo) -> SellerPublicOut:
        return cls(
            id=s.id,
            name=s.name,
            legal_name=s.legal_name,
            country=s.country,
            description=s.description,
            is_house=s.is_house,
            since=s.approved_at or s.created_at,
            performance=PerformanceOut.of(s.performance),
        )


class SellerOut(SellerPublicOut):
    """A seller as staff and the applicant see it."""

    email: str
    status: str
    status_reason: str | None
    payout_reference: str | None
    warehouse_code: str | None
    created_at: datetime

    @classmethod
    def of(cls, s: service.SellerInfo) -> SellerOut:
        public = SellerPublicOut.of(s).model_dump()
        return cls(
            **public,
            email=s.email,
            status=s.status,
            status_reason=s.status_reason,
            payout_reference=s.payout_reference,
            warehouse_code=s.warehouse_code,
            created_at=s.created_at,
        )


class OfferIn(_Strict):
    sku: Ref = Field(description="The variant's SKU (or its id)")
    price: DecimalStr
    shipping: DecimalStr = "0"
    quantity: Stock = 0
    handling_days: HandlingDays = 2
    active: Flag = True
    seller_id: Annotated[str, Field(max_length=40)] | None = Field(
        default=None, description="Staff only: the seller the offer is for"
    )


class OfferPatchIn(_Strict):
    price: DecimalStr | None = None
    shipping: DecimalStr | None = None
    quantity: Stock | None = None
    handling_days: HandlingDays | None = None
    active: Flag | None = None


class OfferOut(BaseModel):
    id: str
    seller_id: str
    variant_id: str
    product_id: str
    sku: str
    price: str
    shipping: str
    currency: str
    quantity: int = Field(description="Units free to sell in the seller's warehouse")
    handling_days: int
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, o: service.OfferInfo) -> OfferOut:
        return cls(
            id=o.id,
            seller_id=o.seller_id,
            variant_id=o.variant_id,
            product_id=o.product_id,
            sku=o.sku,
            price=format_minor(o.price, o.currency),
            shipping=format_minor(o.shipping_price, o.currency),
            currency=o.currency,
            quantity=o.available,
            handling_days=o.handling_days,
            active=o.active,
            created_at=o.created_at,
            updated_at=o.updated_at,
        )


class RowErrorOut(BaseModel):
    row: int = Field(description="The file's row number, the header being row 1")
    column: str | None
    message: str


class ImportReportOut(BaseModel):
    mode: str
    rows: int
    created: int
    updated: int
    deactivated: int
    errors: list[RowErrorOut]

    @classmethod
    def of(cls, r: service.ImportReport) -> ImportReportOut:
        return cls(
            mode=r.mode,
            rows=r.rows,
            created=r.created,
            updated=r.updated,
            deactivated=r.deactivated,
            errors=[RowErrorOut(row=e.row, column=e.column, message=e.message) for e in r.errors],
        )


class PublicOfferOut(BaseModel):
    """An offer as shoppers see it: never the exact stock."""

    offer_id: str
    seller_id: str
    seller_name: str
    is_house: bool
    price: str
    shipping: str
    landed_price: str
    currency: str
    handling_days: int
    low_stock: str | None

    @classmethod
    def of(cls, o: service.BuyBoxOffer) -> PublicOfferOut:
        return cls(
            offer_id=o.offer_id,
            seller_id=o.seller_id,
            seller_name=o.seller_name,
            is_house=o.is_house,
            price=format_minor(o.price, o.currency),
            shipping=format_minor(o.shipping, o.currency),
            landed_price=format_minor(o.landed_price, o.currency),
            currency=o.currency,
            handling_days=o.handling_days,
            low_stock=low_stock_hint(o.available),
        )


class VariantOffersOut(BaseModel):
    variant_id: str
    sku: str
    featured: PublicOfferOut | None
    others: list[PublicOfferOut]


class ProductOffersOut(BaseModel):
    product_id: str
    country: str
    sort: str
    variants: list[VariantOffersOut]

    @classmethod
    def of(
        cls, product_id: str, country: str, sort: str, found: list[service.VariantOffers]
    ) -> ProductOffersOut:
        return cls(
            product_id=product_id,
            country=country,
            sort=sort,
            variants=[
                VariantOffersOut(
                    variant_id=v.variant.id,
                    sku=v.variant.sku,
                    featured=PublicOfferOut.of(v.featured) if v.featured else None,
                    others=[PublicOfferOut.of(o) for o in v.others],
                )
                for v in found
            ],
        )


def application(body: SellerApplicationIn) -> service.Application:
    return service.Application(
        name=body.name,
        legal_name=body.legal_name,
        email=body.email,
        country=body.country,
        ship_to=body.ship_to,
        description=body.description,
        payout_reference=body.payout_reference,
    )
