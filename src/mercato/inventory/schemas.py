"""What crosses the inventory API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from mercato.inventory.service import (
    DEFAULT_HANDLING_DAYS,
    MAX_HANDLING_DAYS,
    MAX_QUANTITY,
    LedgerDifference,
    ReservationInfo,
    StockLevel,
    WarehouseInfo,
)
from mercato.openapi import WholeNumber
from mercato.text import PlainLine

Quantity = Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True), WholeNumber]
Sku = Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=64)]
WarehouseCode = Annotated[str, PlainLine(strip_whitespace=True, min_length=2, max_length=16)]
Country = Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")]
Reference = Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=80)]
HandlingDays = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_HANDLING_DAYS,
        strict=True,
        description="Business days from the day an order counts from until the parcel leaves",
    ),
    WholeNumber,
]
Reason = Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=200)]


class WarehouseIn(BaseModel):
    code: Annotated[
        str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{1,15}$"), AfterValidator(str.upper)
    ]
    name: Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=120)]
    countries: Annotated[list[Country], Field(max_length=250)] = []
    region: Annotated[str, PlainLine(strip_whitespace=True, max_length=80)] | None = None
    handling_days: HandlingDays = DEFAULT_HANDLING_DAYS


class WarehousePatch(BaseModel):
    handling_days: HandlingDays


class WarehouseOut(BaseModel):
    id: str
    code: str
    name: str
    countries: list[str]
    region: str | None
    active: bool
    handling_days: int

    @classmethod
    def of(cls, w: WarehouseInfo) -> WarehouseOut:
        return cls(
            id=w.id,
            code=w.code,
            name=w.name,
            countries=list(w.countries),
            region=w.region,
            active=w.active,
            handling_days=w.handling_days,
        )


class ReceiveIn(BaseModel):
    sku: Sku
    warehouse: WarehouseCode
    quantity: Quantity
    reference: Reference | None = None


class AdjustIn(BaseModel):
    sku: Sku
    warehouse: WarehouseCode
    delta: Annotated[
        int,
        Field(
            ge=-MAX_QUANTITY, le=MAX_QUANTITY, strict=True, json_schema_extra={"not": {"const": 0}}
        ),
        WholeNumber,
    ]
    reason: Reason


class StockLevelOut(BaseModel):
    warehouse: str
    warehouse_id: str
    on_hand: int
    reserved: int
    available: int
    updated_at: datetime

    @classmethod
    def of(cls, s: StockLevel) -> StockLevelOut:
        return cls(
            warehouse=s.warehouse_code,
            warehouse_id=s.warehouse_id,
            on_hand=s.on_hand,
            reserved=s.reserved,
            available=s.available,
            updated_at=s.updated_at,
        )


class StockChangeOut(BaseModel):
    """The stock row a receive or adjustment changed."""

    variant_id: str
    sku: str
    stock: StockLevelOut


class ReservationOut(BaseModel):
    id: str
    owner: str
    variant_id: str
    warehouse: str
    quantity: int
    state: str
    expires_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, r: ReservationInfo) -> ReservationOut:
        return cls(
            id=r.id,
            owner=r.owner,
            variant_id=r.variant_id,
            warehouse=r.warehouse_code,
            quantity=r.quantity,
            state=r.state,
            expires_at=r.expires_at,
            created_at=r.created_at,
        )


class VariantStockOut(BaseModel):
    variant_id: str
    sku: str
    title: str
    on_hand: int
    reserved: int
    available: int
    warehouses: list[StockLevelOut]
    reservations: list[ReservationOut]


class ReserveLineIn(BaseModel):
    sku: Sku
    quantity: Quantity


class ReserveIn(BaseModel):
    """A manual hold (a phone order, a showroom customer) placed by staff."""

    owner: Annotated[str, PlainLine(strip_whitespace=True, min_length=1, max_length=80)]
    lines: Annotated[list[ReserveLineIn], Field(min_length=1, max_length=100)]
    country: Country | None = None
    warehouse: WarehouseCode | None = None
    ttl_seconds: Annotated[int, Field(ge=1, le=30 * 24 * 3600, strict=True), WholeNumber] | None = (
        None
    )


class ReleaseIn(BaseModel):
    reason: Reason = "released by staff"


class LedgerDifferenceOut(BaseModel):
    variant_id: str
    warehouse_id: str
    on_hand: int
    expected_on_hand: int
    reserved: int
    expected_reserved: int
    ledger_reserved: int
    problems: list[str]

    @classmethod
    def of(cls, d: LedgerDifference) -> LedgerDifferenceOut:
        return cls(
            variant_id=d.variant_id,
            warehouse_id=d.warehouse_id,
            on_hand=d.on_hand,
            expected_on_hand=d.expected_on_hand,
            reserved=d.reserved,
            expected_reserved=d.expected_reserved,
            ledger_reserved=d.ledger_reserved,
            problems=d.problems,
        )


class LedgerCheckOut(BaseModel):
    ok: bool
    rule: str
    stock_rows: int
    differences: list[LedgerDifferenceOut]


class AvailabilityOut(BaseModel):
    """What a shopper may know: whether it can be bought, and a hint when little is left."""

    in_stock: bool
    available_hint: str | None
    available_elsewhere: bool = Field(
        default=False,
        description="Not in stock for this destination, but warehouses shipping elsewhere "
        "have it: not available for delivery there",
    )
