"""What the fulfilment API takes and answers with (amounts as decimal strings)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mercato.fulfilment.service import (
    FulfilmentInfo,
    SellerOrderPage,
    SellerOrderPart,
    ShipmentInfo,
)
from mercato.money import format_minor
from mercato.openapi import DateTime
from mercato.text import PlainLine


class ShipmentLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_line_id: Annotated[str, PlainLine(min_length=1, max_length=40)]
    quantity: int = Field(ge=1, le=100_000)


class ShipmentIn(BaseModel):
    """``lines`` left out: every unit not shipped yet. ``shipment_id`` (optional, ``shp_…``):
    chosen by the client so that a retried request can never ship or capture twice."""

    model_config = ConfigDict(extra="forbid")

    carrier: Annotated[str, PlainLine(min_length=1, max_length=40), Field(examples=["sandbox"])]
    service: Annotated[str, PlainLine(max_length=40)] | None = None
    tracking_number: Annotated[str, PlainLine(max_length=80)] | None = None
    lines: list[ShipmentLineIn] | None = Field(default=None, min_length=1, max_length=500)
    fulfilment_id: Annotated[str, PlainLine(max_length=40)] | None = None
    shipment_id: Annotated[str, PlainLine(max_length=40)] | None = None


class DeliverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delivered_at: DateTime | None = None


class FulfilmentItemOut(BaseModel):
    order_line_id: str
    variant_id: str
    quantity: int
    quantity_shipped: int


class FulfilmentOut(BaseModel):
    id: str
    order_id: str
    warehouse: str
    status: str
    units: int
    units_shipped: int
    picked_at: datetime | None
    packed_at: datetime | None
    created_at: datetime
    items: list[FulfilmentItemOut]

    @classmethod
    def of(cls, f: FulfilmentInfo) -> FulfilmentOut:
        return cls(
            id=f.id,
            order_id=f.order_id,
            warehouse=f.warehouse_code,
            status=f.status,
            units=f.units,
            units_shipped=f.units_shipped,
            picked_at=f.picked_at,
            packed_at=f.packed_at,
            created_at=f.created_at,
            items=[
                FulfilmentItemOut(
                    order_line_id=i.order_line_id,
                    variant_id=i.variant_id,
                    quantity=i.quantity,
                    quantity_shipped=i.quantity_shipped,
                )
                for i in f.items
            ],
        )


class FulfilmentListOut(BaseModel):
    items: list[FulfilmentOut]


class ShipmentLineOut(BaseModel):
    order_line_id: str
    quantity: int


class TrackingEventOut(BaseModel):
    status: str
    description: str
    location: str | None
    occurred_at: datetime


class ShipmentOut(BaseModel):
    id: str
    order_id: str
    carrier: str
    service: str | None
    tracking_number: str
    tracking_url: str | None
    status: str
    shipped_at: datetime | None
    delivered_at: datetime | None
    lines: list[ShipmentLineOut]
    events: list[TrackingEventOut]

    @classmethod
    def fields_of(cls, s: ShipmentInfo) -> dict[str, Any]:
        return {
            "id": s.id,
            "order_id": s.order_id,
            "carrier": s.carrier,
            "service": s.service,
            "tracking_number": s.tracking_number,
            "tracking_url": s.tracking_url,
            "status": s.status,
            "shipped_at": s.shipped_at,
            "delivered_at": s.delivered_at,
            "lines": [
                ShipmentLineOut(order_line_id=k, quantity=v)
                for k, v in sorted(s.line_quantities().items())
            ],
            "events": [
                TrackingEventOut(
                    status=e.status,
                    description=e.description,
                    location=e.location,
                    occurred_at=e.occurred_at,
                )
                for e in s.events
            ],
        }

    @classmethod
    def of(cls, s: ShipmentInfo) -> ShipmentOut:
        return cls(**cls.fields_of(s))


class StaffShipmentOut(ShipmentOut):
    fulfilment_id: str | None
    currency: str
    captured: str
    label: str | None
    created_by: str
    created_at: datetime

    @classmethod
    def staff(cls, s: ShipmentInfo) -> StaffShipmentOut:
        return cls(
            **cls.fields_of(s),
            fulfilment_id=s.fulfilment_id,
            currency=s.currency,
            captured=format_minor(s.capture_amount, s.currency),
            label=s.label,
            created_by=s.created_by,
            created_at=s.created_at,
        )


class StaffShipmentListOut(BaseModel):
    items: list[StaffShipmentOut]


class TrackingOut(BaseModel):
    order_id: str
    status: str
    shipments: list[ShipmentOut]


class RateQuoteOut(BaseModel):
    service: str
    amount: str
    currency: str
    min_days: int
    max_days: int


class CarrierOut(BaseModel):
    name: str
    services: list[str]
    requires_tracking_number: bool
    rates: list[RateQuoteOut]


# -- a marketplace seller's order parts ------------------------------------------------------------


class SellerShipmentIn(BaseModel):
    """``lines`` left out: every unit of the part not shipped yet. ``shipment_id`` (optional,
    ``shp_…``): chosen by the client so that a retried request can never ship or capture
    twice."""

    model_config = ConfigDict(extra="forbid")

    carrier: Annotated[str, PlainLine(min_length=1, max_length=40), Field(examples=["sandbox"])]
    service: Annotated[str, PlainLine(max_length=40)] | None = None
    tracking_number: Annotated[str, PlainLine(max_length=80)] | None = None
    lines: list[ShipmentLineIn] | None = Field(default=None, min_length=1, max_length=500)
    shipment_id: Annotated[str, PlainLine(max_length=40)] | None = None


class SellerOrderLineOut(BaseModel):
    order_line_id: str
    sku: str
    title: str
    options: dict[str, str]
    quantity: int
    quantity_shipped: int
    quantity_left: int = Field(description="Units not shipped yet")


class SellerOrderOut(BaseModel):
    """One seller's part of an order: what that seller ships, where, and its parcels."""

    part_id: str
    order_id: str
    seller_id: str
    seller_name: str
    status: str = Field(description="The part's status")
    order_status: str
    created_at: datetime
    currency: str
    subtotal: str
    shipping: str
    total: str
    shipping_address: dict[str, Any]
    units: int
    units_left: int = Field(description="Units of the part not shipped yet")
    can_ship: bool
    lines: list[SellerOrderLineOut]
    shipments: list[ShipmentOut]

    @classmethod
    def of(cls, found: SellerOrderPart) -> SellerOrderOut:
        part, order, c = found.part, found.order, found.order.currency
        return cls(
            part_id=part.id,
            order_id=order.id,
            seller_id=part.seller_id,
            seller_name=found.seller_name,
            status=part.status,
            order_status=order.status,
            created_at=part.created_at,
            currency=c,
            subtotal=format_minor(part.subtotal, c),
            shipping=format_minor(part.shipping, c),
            total=format_minor(part.total, c),
            shipping_address=order.shipping_address,
            units=found.units,
            units_left=found.units_left,
            can_ship=found.can_ship,
            lines=[
                SellerOrderLineOut(
                    order_line_id=line.id,
                    sku=line.sku,
                    title=line.title,
                    options=line.options,
                    quantity=line.quantity,
                    quantity_shipped=line.quantity_shipped,
                    quantity_left=line.quantity - line.quantity_shipped,
                )
                for line in found.lines
            ],
            shipments=[ShipmentOut.of(s) for s in found.shipments],
        )


class SellerOrderPageOut(BaseModel):
    items: list[SellerOrderOut]
    next_before: str | None = Field(description="Pass as ``before`` for the next (older) page")

    @classmethod
    def of(cls, page: SellerOrderPage) -> SellerOrderPageOut:
        return cls(items=[SellerOrderOut.of(x) for x in page.items], next_before=page.next_before)
