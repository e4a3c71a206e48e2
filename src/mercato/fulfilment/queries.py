"""Reading fulfilment: an order's fulfilments (one per warehouse), the pick list, shipments
with their tracking, and what returns need to know (delivered units, where a line came from).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Row, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from mercato.db import UnitOfWork
from mercato.fulfilment.models import (
    FULFILMENT_STATUSES,
    Fulfilment,
    FulfilmentItem,
    Shipment,
    ShipmentItem,
    TrackingEvent,
)
from mercato.money import format_minor
from mercato.orders import service as orders
from mercato.problems import validation_problem

FULFILMENTS = cast(Table, Fulfilment.__table__)
ITEMS = cast(Table, FulfilmentItem.__table__)
SHIPMENTS = cast(Table, Shipment.__table__)
SHIPMENT_ITEMS = cast(Table, ShipmentItem.__table__)
TRACKING = cast(Table, TrackingEvent.__table__)

MAX_PAGE = 200
MAX_ACTOR = 80
PICKABLE: tuple[str, ...] = ("pending",)
PACKABLE: tuple[str, ...] = ("pending", "picked")


# -- what callers get ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FulfilmentItemInfo:
    id: str
    order_line_id: str
    variant_id: str
    quantity: int
    quantity_claimed: int
    quantity_shipped: int


@dataclass(frozen=True, slots=True)
class FulfilmentInfo:
    id: str
    order_id: str
    warehouse_code: str
    status: str
    picked_at: datetime | None
    packed_at: datetime | None
    created_at: datetime
    updated_at: datetime
    items: tuple[FulfilmentItemInfo, ...]

    @property
    def units(self) -> int:
        return sum(i.quantity for i in self.items)

    @property
    def units_shipped(self) -> int:
        return sum(i.quantity_shipped for i in self.items)

    @property
    def open(self) -> bool:
        """Still to be sent from (not cancelled)."""
        return self.status != "cancelled"

    @property
    def can_pick(self) -> bool:
        return self.status in PICKABLE

    @property
    def can_pack(self) -> bool:
        return self.status in PACKABLE


@dataclass(frozen=True, slots=True)
class ShipmentLine:
    order_line_id: str
    fulfilment_item_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class TrackingEventInfo:
    status: str
    description: str
    location: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class ShipmentInfo:
    id: str
    order_id: str
    fulfilment_id: str | None
    carrier: str
    service: str | None
    tracking_number: str
    tracking_url: str | None
    label: str | None
    status: str
    currency: str
    capture_amount: int
    created_by: str
    created_at: datetime
    shipped_at: datetime | None
    delivered_at: datetime | None
    lines: tuple[ShipmentLine, ...]
    events: tuple[TrackingEventInfo, ...]

    @property
    def can_deliver(self) -> bool:
        return self.status == "in_transit"

    @property
    def capture_pending(self) -> bool:
        """Its capture is not confirmed yet (it has not left); retrying finishes it."""
        return self.status == "pending"

    def line_quantities(self) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for line in self.lines:
            found[line.order_line_id] += line.quantity
        return dict(found)


# -- small helpers ---------------------------------------------------------------------------------


def dialect_insert(uow: UnitOfWork, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that can do nothing on a conflict, on either backend."""
    return (postgresql.insert if uow.dialect.name == "postgresql" else sqlite.insert)(table)


def unit_share(total: int, quantity: int, units: int) -> int:
    """What the first ``units`` of a line of ``quantity`` units costing ``total`` are worth.

    ``unit_share(t, q, a + b) - unit_share(t, q, a)`` is what ``b`` more units are worth, and
    all ``q`` units add up to exactly ``t``: no cent is lost or made by splitting a line.
    """
    if quantity <= 0:
        return 0
    return total * units // quantity


def check_actor(actor: str) -> str:
    if not actor or len(actor) > MAX_ACTOR:
        raise ValueError(f"actor must be 1 to {MAX_ACTOR} characters")
    return actor


def check_fulfilment_status(status: str | None) -> str | None:
    if status is not None and status not in FULFILMENT_STATUSES:
        raise validation_problem("status", f"must be one of {', '.join(FULFILMENT_STATUSES)}")
    return status


# -- reading ---------------------------------------------------------------------------------------


def _item_info(row: Row[Any]) -> FulfilmentItemInfo:
    return FulfilmentItemInfo(
        id=row.id,
        order_line_id=row.order_line_id,
        variant_id=row.variant_id,
        quantity=row.quantity,
        quantity_claimed=row.quantity_claimed,
        quantity_shipped=row.quantity_shipped,
    )


async def _fulfilments(uow: UnitOfWork, rows: Sequence[Row[Any]]) -> list[FulfilmentInfo]:
    ids = [r.id for r in rows]
    items: dict[str, list[FulfilmentItemInfo]] = defaultdict(list)
    if ids:
        found = await uow.execute(
            select(ITEMS).where(ITEMS.c.fulfilment_id.in_(ids)).order_by(ITEMS.c.id)
        )
        for item in found:
            items[item.fulfilment_id].append(_item_info(item))
    return [
        FulfilmentInfo(
            id=r.id,
            order_id=r.order_id,
            warehouse_code=r.warehouse_code,
            status=r.status,
            picked_at=r.picked_at,
            packed_at=r.packed_at,
            created_at=r.created_at,
            updated_at=r.updated_at,
            items=tuple(items[r.id]),
        )
        for r in rows
    ]


async def fulfilments_for_order(uow: UnitOfWork, order_id: str) -> list[FulfilmentInfo]:
    rows = (
        await uow.execute(
            select(FULFILMENTS)
            .where(FULFILMENTS.c.order_id == order_id)
            .order_by(FULFILMENTS.c.warehouse_code)
        )
    ).all()
    return await _fulfilments(uow, rows)


async def get_fulfilment(uow: UnitOfWork, fulfilment_id: str) -> FulfilmentInfo | None:
    rows = (await uow.execute(select(FULFILMENTS).where(FULFILMENTS.c.id == fulfilment_id))).all()
    found = await _fulfilments(uow, rows)
    return found[0] if found else None


async def list_fulfilments(
    uow: UnitOfWork,
    *,
    warehouse: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[FulfilmentInfo]:
    """Fulfilments to work on, oldest first (first in, first picked)."""
    if not 1 <= limit <= MAX_PAGE:
        raise validation_problem("limit", f"must be between 1 and {MAX_PAGE}")
    query = select(FULFILMENTS)
    if warehouse is not None:
        query = query.where(FULFILMENTS.c.warehouse_code == warehouse.strip().upper())
    if check_fulfilment_status(status) is not None:
        query = query.where(FULFILMENTS.c.status == status)
    rows = (
        await uow.execute(query.order_by(FULFILMENTS.c.created_at, FULFILMENTS.c.id).limit(limit))
    ).all()
    return await _fulfilments(uow, rows)


async def _shipments(
    uow: UnitOfWork, rows: Sequence[Row[Any]], *, with_label: bool = True
) -> list[ShipmentInfo]:
    ids = [r.id for r in rows]
    lines: dict[str, list[ShipmentLine]] = defaultdict(list)
    tracked: dict[str, list[TrackingEventInfo]] = defaultdict(list)
    if ids:
        for item in await uow.execute(
            select(SHIPMENT_ITEMS)
            .where(SHIPMENT_ITEMS.c.shipment_id.in_(ids))
            .order_by(SHIPMENT_ITEMS.c.id)
        ):
            lines[item.shipment_id].append(
                ShipmentLine(item.order_line_id, item.fulfilment_item_id, item.quantity)
            )
        for ev in await uow.execute(
            select(TRACKING)
            .where(TRACKING.c.shipment_id.in_(ids))
            .order_by(TRACKING.c.occurred_at, TRACKING.c.id)
        ):
            tracked[ev.shipment_id].append(
                TrackingEventInfo(ev.status, ev.description, ev.location, ev.occurred_at)
            )
    return [
        ShipmentInfo(
            id=r.id,
            order_id=r.order_id,
            fulfilment_id=r.fulfilment_id,
            carrier=r.carrier,
            service=r.service,
            tracking_number=r.tracking_number,
            tracking_url=r.tracking_url,
            label=r.label if with_label else None,
            status=r.status,
            currency=r.currency,
            capture_amount=r.capture_amount,
            created_by=r.created_by,
            created_at=r.created_at,
            shipped_at=r.shipped_at,
            delivered_at=r.delivered_at,
            lines=tuple(lines[r.id]),
            events=tuple(tracked[r.id]),
        )
        for r in rows
    ]


async def get_shipment(uow: UnitOfWork, shipment_id: str) -> ShipmentInfo | None:
    rows = (await uow.execute(select(SHIPMENTS).where(SHIPMENTS.c.id == shipment_id))).all()
    found = await _shipments(uow, rows)
    return found[0] if found else None


async def shipments_for_order(
    uow: UnitOfWork, order_id: str, *, include_pending: bool = False
) -> list[ShipmentInfo]:
    """The order's shipments, oldest first (pending ones, whose capture still runs, only when
    asked: they have not left)."""
    query = select(SHIPMENTS).where(SHIPMENTS.c.order_id == order_id)
    if not include_pending:
        query = query.where(SHIPMENTS.c.status != "pending")
    rows = (await uow.execute(query.order_by(SHIPMENTS.c.created_at, SHIPMENTS.c.id))).all()
    return await _shipments(uow, rows)


async def captured_for_order(uow: UnitOfWork, order_id: str) -> int:
    """What the order's shipments captured (the money side of "shipped")."""
    total = await uow.scalar(
        select(func.coalesce(func.sum(SHIPMENTS.c.capture_amount), 0)).where(
            SHIPMENTS.c.order_id == order_id, SHIPMENTS.c.status != "pending"
        )
    )
    return int(total or 0)


@dataclass(frozen=True, slots=True)
class DeliveredUnits:
    """Per order line: units in delivered shipments, and when the last of them arrived."""

    quantity: int
    last_delivered_at: datetime


async def delivered_units(uow: UnitOfWork, order_id: str) -> dict[str, DeliveredUnits]:
    """For returns: how many units of each order line were delivered, and when."""
    s, i = SHIPMENTS.c, SHIPMENT_ITEMS.c
    rows = await uow.execute(
        select(i.order_line_id, func.sum(i.quantity), func.max(s.delivered_at))
        .join(SHIPMENTS, s.id == i.shipment_id)
        .where(s.order_id == order_id, s.status == "delivered")
        .group_by(i.order_line_id)
    )
    found: dict[str, DeliveredUnits] = {}
    for line_id, quantity, when in rows:
        if isinstance(when, str):  # SQLite hands an aggregate back as text
            when = datetime.fromisoformat(when)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        found[line_id] = DeliveredUnits(int(quantity), when)
    return found


async def received_product(uow: UnitOfWork, user_id: str, product_id: str) -> bool:
    """Whether a parcel holding this product reached this customer (a line of one of their
    orders, in a delivered shipment): what makes their review a verified purchase."""
    lines = await orders.customer_product_lines(uow, user_id, product_id)
    if not lines:
        return False
    s, i = SHIPMENTS.c, SHIPMENT_ITEMS.c
    found = await uow.scalar(
        select(i.id)
        .join(SHIPMENTS, s.id == i.shipment_id)
        .where(
            s.order_id.in_({order_id for order_id, _ in lines}),
            s.status == "delivered",
            i.order_line_id.in_([line_id for _, line_id in lines]),
        )
        .limit(1)
    )
    return found is not None


async def warehouse_of_line(uow: UnitOfWork, order_id: str, order_line_id: str) -> str | None:
    """The warehouse that sent (most of) this order line: where a return goes back by default."""
    row = (
        await uow.execute(
            select(FULFILMENTS.c.warehouse_code)
            .join(ITEMS, ITEMS.c.fulfilment_id == FULFILMENTS.c.id)
            .where(ITEMS.c.order_id == order_id, ITEMS.c.order_line_id == order_line_id)
            .order_by(ITEMS.c.quantity_shipped.desc(), FULFILMENTS.c.warehouse_code)
            .limit(1)
        )
    ).first()
    return str(row[0]) if row is not None else None


# -- what the order page and the tracking page show ------------------------------------------------


def shipment_view(shipment: ShipmentInfo, *, staff: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": shipment.id,
        "carrier": shipment.carrier,
        "service": shipment.service,
        "tracking_number": shipment.tracking_number,
        "tracking_url": shipment.tracking_url,
        "status": shipment.status,
        "shipped_at": shipment.shipped_at.isoformat() if shipment.shipped_at else None,
        "delivered_at": shipment.delivered_at.isoformat() if shipment.delivered_at else None,
        "lines": [
            {"order_line_id": line_id, "quantity": quantity}
            for line_id, quantity in sorted(shipment.line_quantities().items())
        ],
        "events": [
            {
                "status": e.status,
                "description": e.description,
                "location": e.location,
                "occurred_at": e.occurred_at.isoformat(),
            }
            for e in shipment.events
        ],
    }
    if staff:
        view["captured"] = format_minor(shipment.capture_amount, shipment.currency)
        view["fulfilment_id"] = shipment.fulfilment_id
        view["created_by"] = shipment.created_by
    return view


@dataclass(frozen=True, slots=True)
class OrderTracking:
    order: orders.OrderInfo
    shipments: list[ShipmentInfo]


async def customer_tracking(uow: UnitOfWork, order_id: str, user_id: str) -> OrderTracking | None:
    """The customer's order with its shipments that have left; None when it is unknown or
    someone else's (callers answer 404 either way)."""
    order = await orders.get_customer_order(uow, order_id, user_id)
    if order is None:
        return None
    return OrderTracking(order, await shipments_for_order(uow, order_id))


async def order_shipments(uow: UnitOfWork, order: orders.OrderInfo) -> list[dict[str, Any]]:
    """The order page's shipments (registered with the orders module by ``modules.wire``)."""
    return [shipment_view(s) for s in await shipments_for_order(uow, order.id)]
