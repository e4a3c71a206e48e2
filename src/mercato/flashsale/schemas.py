"""What crosses the flash-sale API. The sale price goes out (and comes in) as a decimal string;
a JSON number is refused for money."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from mercato.flashsale.common import MAX_ALLOCATION, MAX_LIMIT, MAX_RATE
from mercato.flashsale.service import NewSale, QueueState, SaleCounters
from mercato.money import CurrencyCode, DecimalStr, MoneyError, format_minor, to_minor
from mercato.openapi import DateTime, WholeNumber
from mercato.problems import validation_problem
from mercato.text import PlainLine

Timestamp = Annotated[DateTime, Field(examples=["2026-01-01T10:00:00Z"])]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, str_strip_whitespace=True)


class SaleVariantIn(_In):
    variant_id: Annotated[str, PlainLine(min_length=1, max_length=40)]
    allocation: Annotated[int, Field(ge=1, le=MAX_ALLOCATION), WholeNumber] = Field(
        description="Units of this variant set aside for the sale"
    )


class SaleIn(_In):
    title: Annotated[str, PlainLine(min_length=1, max_length=200)]
    variants: list[SaleVariantIn] = Field(min_length=1, max_length=50)
    price: DecimalStr = Field(description="The sale price of one unit, in ``currency``")
    currency: CurrencyCode | None = Field(default=None, description="Default: the shop's")
    starts_at: Timestamp
    ends_at: Timestamp
    per_customer_limit: Annotated[int, Field(ge=1, le=MAX_LIMIT), WholeNumber] = 1
    admission_rate: Annotated[int, Field(ge=1, le=MAX_RATE), WholeNumber] = Field(
        description="Buyers let in per minute"
    )


def price_minor(body: SaleIn, currency: str) -> int:
    """The price as minor units of ``currency``; a 422 naming ``price`` otherwise."""
    try:
        return to_minor(body.price, currency)
    except MoneyError as exc:
        raise validation_problem("price", str(exc)) from exc


def check_zones(body: SaleIn) -> None:
    for name in ("starts_at", "ends_at"):
        moment: datetime = getattr(body, name)
        if moment.tzinfo is None:
            raise validation_problem(name, "needs a time zone, e.g. 2026-01-01T00:00:00Z")


def new_sale(body: SaleIn, shop_currency: str) -> NewSale:
    """The sale the API's body and the back office's form ask for (422 naming a field with no
    time zone or a price the currency cannot hold)."""
    check_zones(body)
    currency = body.currency or shop_currency
    return NewSale(
        title=body.title,
        variants=[(v.variant_id, v.allocation) for v in body.variants],
        price=price_minor(body, currency),
        currency=currency,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        admission_rate=body.admission_rate,
        per_customer_limit=body.per_customer_limit,
    )


class SaleVariantOut(BaseModel):
    variant_id: str
    allocation: int
    sold: int


class SaleOut(BaseModel):
    id: str
    title: str
    price: str
    currency: str
    allocation: int
    per_customer_limit: int
    admission_rate: int
    starts_at: datetime
    ends_at: datetime
    status: Literal["scheduled", "live", "ended"]
    end_reason: str | None
    variants: list[SaleVariantOut]
    queued: int = Field(description="Buyers waiting")
    admitted: int = Field(description="Buyers holding units now")
    purchased: int = Field(description="Buyers who bought")
    expired: int = Field(description="Places that lapsed or whose hold ran out")
    sold: int = Field(description="Units sold")
    held: int = Field(description="Units held by admitted buyers")
    remaining: int = Field(description="Units neither sold nor held")
    gate_remaining: int | None = Field(
        description="What the admission gate says remains (null: not loaded, or unreachable)"
    )
    admissions_paused: bool = Field(description="The gate is unreachable: nobody is let in")

    @classmethod
    def of(cls, counters: SaleCounters, now: datetime) -> SaleOut:
        sale = counters.sale
        status = sale.status_at(now)
        return cls(
            id=sale.id,
            title=sale.title,
            price=format_minor(sale.price, sale.currency),
            currency=sale.currency,
            allocation=sale.allocation,
            per_customer_limit=sale.per_customer_limit,
            admission_rate=sale.admission_rate,
            starts_at=sale.starts_at,
            ends_at=sale.ends_at,
            status=status,
            end_reason=sale.end_reason,
            variants=[SaleVariantOut(**vars_of(v)) for v in sale.variants],
            queued=counters.queued,
            admitted=counters.admitted,
            purchased=counters.purchased,
            expired=counters.expired,
            sold=sale.sold,
            held=sale.held,
            remaining=max(0, sale.remaining),
            gate_remaining=counters.gate_remaining,
            admissions_paused=not counters.gate_reachable,
        )


def vars_of(variant: object) -> dict[str, object]:
    return {name: getattr(variant, name) for name in ("variant_id", "allocation", "sold")}


class QueueStateOut(BaseModel):
    sale_id: str
    state: Literal["waiting", "admitted", "sold_out", "expired", "purchased"]
    sale_status: Literal["scheduled", "live", "ended"]
    starts_at: datetime
    ends_at: datetime
    position: int | None = Field(
        description="Place in line (null in the pre-queue: places are drawn at the start)"
    )
    ahead: int | None = Field(description="About how many are ahead")
    estimated_wait_seconds: int | None
    admission_token: str | None = Field(description="Show it to the checkout (admitted only)")
    admitted_until: datetime | None = Field(description="When the token and the hold expire")
    units: int = Field(description="Units held (admitted only)")
    purchased: int
    paused: bool = Field(description="Admissions are paused for a moment; keep polling")
    poll_after_seconds: int = Field(
        description="Poll again after this long; a place lapses when its buyer stops polling"
    )

    @classmethod
    def of(cls, state: QueueState) -> QueueStateOut:
        return cls(
            sale_id=state.sale_id,
            state=state.state,
            sale_status=state.sale_status,
            starts_at=state.starts_at,
            ends_at=state.ends_at,
            position=state.position,
            ahead=state.ahead,
            estimated_wait_seconds=state.estimated_wait_seconds,
            admission_token=state.admission_token,
            admitted_until=state.admitted_until,
            units=state.units,
            purchased=state.purchased,
            paused=state.paused,
            poll_after_seconds=state.poll_after_seconds,
        )
