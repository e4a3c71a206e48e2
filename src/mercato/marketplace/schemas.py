"""What the marketplace's endpoints take and answer. Amounts are decimal strings."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mercato.inventory.service import MAX_QUANTITY, low_stock_hint
from mercato.marketplace import service
from mercato.marketplace.models import MAX_HANDLING_DAYS
from mercato.money import CurrencyCode, DecimalStr, format_minor
from mercato.openapi import DateTime, WholeNumber
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


# --------------------------------------------------------------------------------------------
# Commissions, payouts, statements

RatePercent = Annotated[
    str,
    Field(
        strict=True,
        pattern=r"^[0-9]{1,3}(\.[0-9]{1,2})?$",
        examples=["12.5"],
        description="Per cent of the gross, 0 to 100, two decimals at most",
    ),
]
ScopeId = Annotated[str, Field(min_length=1, max_length=40)]


def _utc_if_naive(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Instant = Annotated[
    DateTime, AfterValidator(_utc_if_naive), Field(examples=["2026-01-01T00:00:00Z"])
]
Month = Annotated[str, Field(pattern=service.MONTH_PATTERN, examples=["2026-11"])]


class CommissionRuleIn(_Strict):
    rate: RatePercent
    currency: CurrencyCode | None = Field(default=None, description="Default: the shop's")
    seller_id: ScopeId | None = Field(default=None, description="None: every seller")
    category_id: ScopeId | None = Field(default=None, description="None: every category")
    min_commission: DecimalStr | None = None
    max_commission: DecimalStr | None = None
    valid_from: Instant | None = Field(default=None, description="Default: now")
    valid_to: Instant | None = Field(default=None, description="None: open-ended")


class CommissionRuleOut(BaseModel):
    id: str
    scope: str = Field(description="seller_category, seller, category or default")
    seller_id: str | None
    category_id: str | None
    rate: str = Field(description='Per cent, e.g. "12.50"')
    rate_bp: int
    min_commission: str | None
    max_commission: str | None
    currency: str
    valid_from: datetime
    valid_to: datetime | None
    active: bool
    created_at: datetime
    deactivated_at: datetime | None

    @classmethod
    def of(cls, r: service.RuleInfo) -> CommissionRuleOut:
        def bound(value: int | None) -> str | None:
            return None if value is None else format_minor(value, r.currency)

        return cls(
            id=r.id,
            scope=r.scope,
            seller_id=r.seller_id,
            category_id=r.category_id,
            rate=format_minor(r.rate_bp, "EUR"),
            rate_bp=r.rate_bp,
            min_commission=bound(r.min_commission),
            max_commission=bound(r.max_commission),
            currency=r.currency,
            valid_from=r.valid_from,
            valid_to=r.valid_to,
            active=r.active,
            created_at=r.created_at,
            deactivated_at=r.deactivated_at,
        )


class PayoutIn(_Strict):
    seller_id: ScopeId
    amount: DecimalStr
    currency: CurrencyCode | None = Field(default=None, description="Default: the shop's")
    reference: Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=80)] = (
        Field(
            description="The payment provider's transfer reference: recording it twice is "
            "recording it once"
        )
    )
    period: Month | None = Field(default=None, description="The month paid for")
    period_from: date | None = Field(default=None, description="Or the first day paid for")
    period_to: date | None = Field(default=None, description="And the last day paid for")


class PayoutOut(BaseModel):
    id: str
    seller_id: str
    amount: str
    currency: str
    reference: str
    period_start: datetime
    period_end: datetime = Field(description="Exclusive")
    recorded_by: str | None
    created_at: datetime

    @classmethod
    def of(cls, p: service.PayoutInfo) -> PayoutOut:
        return cls(
            id=p.id,
            seller_id=p.seller_id,
            amount=format_minor(p.amount, p.currency),
            currency=p.currency,
            reference=p.reference,
            period_start=p.period.start,
            period_end=p.period.end,
            recorded_by=p.recorded_by,
            created_at=p.created_at,
        )


class StatementOut(BaseModel):
    """Amounts are decimal strings; payables may be negative (the seller owes the shop)."""

    seller_id: str
    currency: str
    period_start: datetime
    period_end: datetime = Field(description="Exclusive")
    opening_payable: str
    sales: str
    refunds: str
    cancellations: str
    commission_charged: str
    commission_reversed: str
    commission: str = Field(description="Charged less reversed")
    net: str = Field(description="Sales less refunds, cancellations and commission")
    payouts: str
    closing_payable: str = Field(description="Opening payable + net - payouts")

    @classmethod
    def of(cls, s: service.Statement) -> StatementOut:
        def money(value: int) -> str:
            return format_minor(value, s.currency)

        return cls(
            seller_id=s.seller_id,
            currency=s.currency,
            period_start=s.period.start,
            period_end=s.period.end,
            opening_payable=money(s.opening_payable),
            sales=money(s.sales),
            refunds=money(s.refunds),
            cancellations=money(s.cancellations),
            commission_charged=money(s.commission_charged),
            commission_reversed=money(s.commission_reversed),
            commission=money(s.commission),
            net=money(s.net),
            payouts=money(s.payouts),
            closing_payable=money(s.closing_payable),
        )


def rule_draft(body: CommissionRuleIn, shop_currency: str) -> service.RuleDraft:
    return service.RuleDraft(
        rate=body.rate,
        currency=body.currency or shop_currency,
        seller_id=body.seller_id,
        category_id=body.category_id,
        min_commission=body.min_commission,
        max_commission=body.max_commission,
        valid_from=body.valid_from,
        valid_to=body.valid_to,
    )
