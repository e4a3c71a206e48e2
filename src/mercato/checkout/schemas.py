"""What crosses the checkout API. Amounts go out (and staff amounts come in) as decimal
strings; a JSON number is refused for money."""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mercato.money import CurrencyCode, DecimalStr
from mercato.openapi import SPACE, DateTime, Integer, WholeNumber
from mercato.text import PlainLine

_CARD_NUMBER = re.compile(r"(?:\d[ -]?){12,18}\d")


def _no_card_number(value: str) -> str:
    if _CARD_NUMBER.search(value):
        raise ValueError("card details are not accepted: send the token from the payment form")
    return value


Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$", examples=["DE"])]
Region = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9-]+$")]
PaymentToken = Annotated[
    str,
    Field(
        min_length=5,
        max_length=68,
        pattern=r"^tok_[A-Za-z0-9_]+$",
        examples=["tok_visa"],
        json_schema_extra={"not": {"pattern": _CARD_NUMBER.pattern}},
    ),
    AfterValidator(_no_card_number),
]
MethodCode = Annotated[str, PlainLine(min_length=1, max_length=32), Field(examples=["standard"])]
PromoCodeText = Annotated[str, PlainLine(max_length=32), Field(examples=["WELCOME10"])]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class AddressIn(_In):
    name: Annotated[str, PlainLine(min_length=1, max_length=100)]
    line1: Annotated[str, PlainLine(min_length=1, max_length=200)]
    line2: Annotated[str, PlainLine(max_length=200)] | None = None
    city: Annotated[str, PlainLine(min_length=1, max_length=100)]
    postal_code: Annotated[str, PlainLine(min_length=1, max_length=20)]
    region: Region | None = None
    country: Country = Field(description="ISO 3166-1 alpha-2")


class CheckoutIn(_In):
    shipping_address: AddressIn
    shipping_method: MethodCode = "standard"
    payment_token: PaymentToken
    promo_code: PromoCodeText | None = None
    email: Annotated[str, PlainLine(min_length=1, max_length=320)] | None = Field(
        default=None,
        description="A guest's e-mail address (required without an account; ignored for a "
        "signed-in customer, whose orders use the account's): the order's mails go there",
    )


class QuoteAddressIn(BaseModel):
    """For a quote only the destination matters; a full address is accepted too."""

    model_config = ConfigDict(extra="ignore", strict=True, str_strip_whitespace=True)

    country: Country
    region: Region | None = None


class QuoteIn(_In):
    shipping_address: QuoteAddressIn
    shipping_method: MethodCode = "standard"
    promo_code: PromoCodeText | None = None


# --- answers --------------------------------------------------------------------------------


class PricedLineOut(BaseModel):
    variant_id: str
    sku: str | None = None
    title: str | None = None
    options: dict[str, str] = {}
    quantity: int
    unit_price: str
    subtotal: str
    discount: str
    tax: str
    total: str
    tax_rate: str = Field(description='Percent, e.g. "19.00"')


class PricedCartOut(BaseModel):
    currency: str
    lines: list[PricedLineOut]
    subtotal: str
    discount: str
    shipping: str
    shipping_tax: str
    tax: str
    total: str
    prices_include_tax: bool
    shipping_method: str
    promo_code: str | None
    weight_grams: int


class PriceChangeOut(BaseModel):
    line_id: str
    variant_id: str
    sku: str
    title: str
    currency: str
    unit_price_seen: str
    unit_price: str


class DeliveryDays(BaseModel):
    min: int
    max: int


class ArrivesOut(BaseModel):
    """The first and last day a parcel may arrive on (the shop's local dates, business days)."""

    earliest: date
    latest: date


class ShippingOptionOut(BaseModel):
    code: str
    name: str
    price: str | None = Field(description="For this cart; null when it cannot carry the parcel")
    delivery_days: DeliveryDays
    arrives: ArrivesOut | None = Field(
        description="When the parcel would arrive if ordered now; null when some line cannot "
        "reach the destination"
    )


class DeliveryOptionOut(BaseModel):
    code: str
    name: str
    delivery_days: DeliveryDays
    arrives: ArrivesOut


class ProductDeliveryOut(BaseModel):
    product_id: str
    variant_id: str | None = Field(
        description="The variant estimated: the one asked for, else the first that can reach "
        "the country"
    )
    country: str
    arrives: ArrivesOut | None = Field(
        description="With the first shipping method; null when nothing can reach the country"
    )
    shipping_options: list[DeliveryOptionOut]


class NotDeliverableOut(BaseModel):
    line_id: str
    variant_id: str
    sku: str
    title: str


class QuoteOut(PricedCartOut):
    price_changes: list[PriceChangeOut]
    shipping_options: list[ShippingOptionOut]
    country: str = Field(description="The destination quoted for")
    not_deliverable: list[NotDeliverableOut] = Field(
        description="Lines only warehouses shipping elsewhere have: a checkout to this "
        "country refuses them (409 `not_deliverable`)"
    )


class PaymentOut(BaseModel):
    intent_id: str | None
    status: str
    card_brand: str | None
    card_last4: str | None


class CheckoutOut(PricedCartOut):
    order_id: str
    checkout_id: str
    status: str
    shipping_address: dict[str, str]
    payment: PaymentOut


class CheckoutStatusOut(BaseModel):
    id: str
    status: str = Field(description="running, waiting, compensating, completed or failed")
    step: str = Field(description="The next step of a checkout in progress")
    order_id: str | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


class WeightBandOut(BaseModel):
    up_to_grams: int | None
    price: str


class ShippingMethodOut(BaseModel):
    code: str
    name: str
    kind: str
    zone: str
    currency: str
    price: str
    free_over: str | None
    weight_bands: list[WeightBandOut]
    delivery_days: DeliveryDays


class ShippingMethodsOut(BaseModel):
    country: str
    methods: list[ShippingMethodOut]


# --- staff ----------------------------------------------------------------------------------


def percent_to_bps(value: str) -> int:
    """``"19"`` / ``"7.7"`` / ``"5.5"`` percent → basis points (1900 / 770 / 550), exactly."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation as exc:
        raise ValueError('must be a percentage such as "19" or "5.5"') from exc
    bps = number * 100
    if bps != bps.to_integral_value() or not 0 <= bps <= 10_000:
        raise ValueError("must be 0 to 100 with at most two decimals")
    return int(bps)


# 0 to 100 with at most two decimals, as the document states it.
PERCENT_PATTERN = rf"^{SPACE}*(100(\.0{{1,2}})?|[0-9]{{1,2}}(\.[0-9]{{1,2}})?){SPACE}*$"
_PERCENT = re.compile(PERCENT_PATTERN)


def _check_percent(value: str) -> str:
    if not _PERCENT.match(value):
        raise ValueError('must be a percentage from 0 to 100, such as "19" or "5.5"')
    percent_to_bps(value)
    return value.strip()


Percent = Annotated[
    str,
    Field(strict=True, examples=["19"], json_schema_extra={"pattern": PERCENT_PATTERN}),
    AfterValidator(_check_percent),
]


# JSON carries timestamps as ISO 8601 strings; strict mode would refuse any string.
Timestamp = Annotated[DateTime, Field(examples=["2026-01-01T00:00:00Z"])]


class ZoneIn(_In):
    name: Annotated[str, PlainLine(min_length=1, max_length=80)]
    countries: list[Country] = Field(min_length=1, max_length=250)


class ZoneOut(BaseModel):
    id: str
    name: str
    countries: list[str]


class WeightBandIn(_In):
    up_to_grams: Annotated[int, Field(ge=1, le=10_000_000), WholeNumber] | None
    price: DecimalStr


class ShippingMethodIn(_In):
    zone_id: Annotated[str, PlainLine(min_length=1, max_length=40)]
    code: MethodCode
    name: Annotated[str, PlainLine(min_length=1, max_length=80)]
    kind: Literal["flat", "weight_band", "free_over"]
    price: DecimalStr = "0.00"
    currency: CurrencyCode
    free_over: DecimalStr | None = None
    weight_bands: list[WeightBandIn] = Field(default_factory=list, max_length=20)
    min_days: Integer = Field(default=2, ge=0, le=365)
    max_days: Integer = Field(default=5, ge=0, le=365)
    position: Integer = Field(default=0, ge=0, le=10_000)


class AdminShippingMethodOut(ShippingMethodOut):
    id: str
    zone_id: str
    position: int
    active: bool


class TaxRateIn(_In):
    country: Country
    region: Region | None = None
    tax_class: str = Field(min_length=1, max_length=32, pattern=r"^[a-z][a-z0-9_]*$")
    rate: Percent


class TaxRateOut(BaseModel):
    id: str
    country: str
    region: str | None
    tax_class: str
    rate: str


class PromoIn(_In):
    code: str = Field(min_length=2, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]+$")
    kind: Literal["percent", "fixed"]
    value: Annotated[str, PlainLine(max_length=20)] = Field(
        description='percent: a percentage ("10"); fixed: an amount ("5.00") in currency',
        examples=["10"],
    )
    currency: CurrencyCode | None = None
    min_subtotal: DecimalStr = "0"
    starts_at: Timestamp | None = None
    ends_at: Timestamp | None = None
    usage_limit: Annotated[int, Field(ge=0, le=100_000_000), WholeNumber] | None = None
    per_customer_limit: Annotated[int, Field(ge=1, le=1_000), WholeNumber] | None = None
    active: bool = True


class PromoOut(BaseModel):
    id: str
    code: str
    kind: str
    value: str
    currency: str | None
    min_subtotal: str
    starts_at: datetime | None
    ends_at: datetime | None
    usage_limit: int | None
    per_customer_limit: int | None
    used_count: int
    active: bool


class SettingsIn(_In):
    prices_include_tax: bool


class SettingsOut(BaseModel):
    prices_include_tax: bool


# --------------------------------------------------------------------------------------------
# The flash-sale checkout


class FlashCheckoutIn(_In):
    admission_token: Annotated[str, PlainLine(min_length=1, max_length=400)] = Field(
        description="The token ``GET /api/flash-sales/{sale_id}/queue/me`` gave when admitted"
    )
    shipping_address: AddressIn
    payment_token: PaymentToken
    shipping_method: MethodCode = "standard"
    variant_id: Annotated[str, PlainLine(min_length=1, max_length=40)] | None = Field(
        default=None,
        description="Which of the sale's variants (default: the first with units left)",
    )


class FlashPurchaseQueuedOut(BaseModel):
    purchase_id: str
    status: Literal["queued"]
    poll: str = Field(description="Where to follow the purchase to its order")


class FlashProblemOut(BaseModel):
    code: str
    detail: str


class FlashPurchaseOut(BaseModel):
    purchase_id: str
    status: Literal["queued", "processing", "completed", "failed"]
    order_id: str | None = Field(description="The order, once completed")
    problem: FlashProblemOut | None = Field(description="Why it failed (failed only)")
