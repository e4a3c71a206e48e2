"""Fulfilment rules: allocation, picking and packing, shipments with capture, delivery, tracking.

**Allocation** (:func:`allocate_order`): a paid order's lines are split over the warehouses its
committed reservations (owner = the checkout id) took the units from: one fulfilment per
warehouse, unique per (order, warehouse), so the ``OrderPlaced`` consumer and a shipment that
gets there first can both call it safely.

**A shipment** (:func:`create_shipment`) runs in three steps, so that a capture failure leaves
nothing shipped and a retry never captures twice:

1. One transaction: the order must be paid (or partly shipped); the units are *claimed* on the
   fulfilment items with conditional updates (``quantity_claimed + q <= quantity``) while the
   order's fulfilment rows are locked, and a ``pending`` shipment row records the amount to
   capture: the shipped units' share of their lines' totals (discount and tax included,
   rounded so that all units of a line add up to exactly its total), and for the shipment that
   claims the last unit, whatever of the order's total is still uncaptured (shipping included).
2. The capture, outside any transaction, with the idempotency key ``ship:<shipment id>``.
   Refused: the claim is undone and the pending row deleted (409/402 ``capture_failed``, nothing
   shipped). Unknown (provider timeout): the row stays pending; the same request again (same
   ``shipment_id``) or the worker job ``fulfilment.finish_shipments`` finishes it with the
   same key.
3. One transaction: the shipment goes ``in_transit`` (conditional on ``pending``), the units
   count as shipped here and on the order (``orders.record_shipped``), the order moves to
   ``shipped`` once every unit has left (``fulfilling`` before that), the first tracking event
   is written and ``ShipmentCreated`` is published.

**Delivery** (:func:`deliver_shipment`): by staff, or by the sandbox carrier's timeline (the
worker job ``fulfilment.advance_tracking``); the order becomes ``delivered`` when every unit
has shipped and every shipment arrived.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato import events
from mercato.db import Database, utcnow
from mercato.fulfilment import carriers as carrier_registry
from mercato.fulfilment.carriers import Carrier, Parcel, TrackingUpdate
from mercato.fulfilment.models import (
    FULFILMENT_STATUSES,
    Fulfilment,
    FulfilmentItem,
    Shipment,
    ShipmentItem,
    TrackingEvent,
)
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.money import format_minor
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.service import PaymentProvider
from mercato.problems import Problem, not_found, validation_problem

log = logging.getLogger("mercato.fulfilment")

Executor = AsyncSession | AsyncConnection

FULFILMENTS = cast(Table, Fulfilment.__table__)
ITEMS = cast(Table, FulfilmentItem.__table__)
SHIPMENTS = cast(Table, Shipment.__table__)
SHIPMENT_ITEMS = cast(Table, ShipmentItem.__table__)
TRACKING = cast(Table, TrackingEvent.__table__)

SHIPMENT_CREATED = "ShipmentCreated"
SHIPMENT_DELIVERED = "ShipmentDelivered"

MAX_PAGE = 200
MAX_ACTOR = 80
PENDING_GRACE = timedelta(seconds=60)
"""A pending shipment older than this is finished (or undone) by the worker."""

_UNPAID = frozenset({"pending", "payment_failed"})


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

    def line_quantities(self) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for line in self.lines:
            found[line.order_line_id] += line.quantity
        return dict(found)


# -- small helpers ---------------------------------------------------------------------------------


def _insert(conn: AsyncConnection, table: Table) -> postgresql.Insert | sqlite.Insert:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


def unit_share(total: int, quantity: int, units: int) -> int:
    """What the first ``units`` of a line of ``quantity`` units costing ``total`` are worth.

    ``unit_share(t, q, a + b) - unit_share(t, q, a)`` is what ``b`` more units are worth, and
    all ``q`` units add up to exactly ``t``: no cent is lost or made by splitting a line.
    """
    if quantity <= 0:
        return 0
    return total * units // quantity


def _check_actor(actor: str) -> str:
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


async def _fulfilments(executor: Executor, rows: Sequence[Row[Any]]) -> list[FulfilmentInfo]:
    ids = [r.id for r in rows]
    items: dict[str, list[FulfilmentItemInfo]] = defaultdict(list)
    if ids:
        found = await executor.execute(
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


async def fulfilments_for_order(executor: Executor, order_id: str) -> list[FulfilmentInfo]:
    rows = (
        await executor.execute(
            select(FULFILMENTS)
            .where(FULFILMENTS.c.order_id == order_id)
            .order_by(FULFILMENTS.c.warehouse_code)
        )
    ).all()
    return await _fulfilments(executor, rows)


async def get_fulfilment(executor: Executor, fulfilment_id: str) -> FulfilmentInfo | None:
    rows = (
        await executor.execute(select(FULFILMENTS).where(FULFILMENTS.c.id == fulfilment_id))
    ).all()
    found = await _fulfilments(executor, rows)
    return found[0] if found else None


async def list_fulfilments(
    executor: Executor,
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
        await executor.execute(
            query.order_by(FULFILMENTS.c.created_at, FULFILMENTS.c.id).limit(limit)
        )
    ).all()
    return await _fulfilments(executor, rows)


async def _shipments(
    executor: Executor, rows: Sequence[Row[Any]], *, with_label: bool = True
) -> list[ShipmentInfo]:
    ids = [r.id for r in rows]
    lines: dict[str, list[ShipmentLine]] = defaultdict(list)
    tracked: dict[str, list[TrackingEventInfo]] = defaultdict(list)
    if ids:
        for item in await executor.execute(
            select(SHIPMENT_ITEMS)
            .where(SHIPMENT_ITEMS.c.shipment_id.in_(ids))
            .order_by(SHIPMENT_ITEMS.c.id)
        ):
            lines[item.shipment_id].append(
                ShipmentLine(item.order_line_id, item.fulfilment_item_id, item.quantity)
            )
        for ev in await executor.execute(
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


async def get_shipment(executor: Executor, shipment_id: str) -> ShipmentInfo | None:
    rows = (await executor.execute(select(SHIPMENTS).where(SHIPMENTS.c.id == shipment_id))).all()
    found = await _shipments(executor, rows)
    return found[0] if found else None


async def shipments_for_order(
    executor: Executor, order_id: str, *, include_pending: bool = False
) -> list[ShipmentInfo]:
    """The order's shipments, oldest first (pending ones, whose capture still runs, only when
    asked: they have not left)."""
    query = select(SHIPMENTS).where(SHIPMENTS.c.order_id == order_id)
    if not include_pending:
        query = query.where(SHIPMENTS.c.status != "pending")
    rows = (await executor.execute(query.order_by(SHIPMENTS.c.created_at, SHIPMENTS.c.id))).all()
    return await _shipments(executor, rows)


async def captured_for_order(executor: Executor, order_id: str) -> int:
    """What the order's shipments captured (the money side of "shipped")."""
    total = await executor.scalar(
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


async def delivered_units(executor: Executor, order_id: str) -> dict[str, DeliveredUnits]:
    """For returns: how many units of each order line were delivered, and when."""
    s, i = SHIPMENTS.c, SHIPMENT_ITEMS.c
    rows = await executor.execute(
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


async def warehouse_of_line(executor: Executor, order_id: str, order_line_id: str) -> str | None:
    """The warehouse that sent (most of) this order line: where a return goes back by default."""
    row = (
        await executor.execute(
            select(FULFILMENTS.c.warehouse_code)
            .join(ITEMS, ITEMS.c.fulfilment_id == FULFILMENTS.c.id)
            .where(ITEMS.c.order_id == order_id, ITEMS.c.order_line_id == order_line_id)
            .order_by(ITEMS.c.quantity_shipped.desc(), FULFILMENTS.c.warehouse_code)
            .limit(1)
        )
    ).first()
    return str(row[0]) if row is not None else None


# -- allocation ------------------------------------------------------------------------------------


def _plan_allocation(
    order: orders.OrderInfo,
    held: Sequence[inventory.ReservationInfo],
    fallback: str | None,
) -> dict[str, list[tuple[orders.OrderLineInfo, int]]]:
    """warehouse code → [(line, units)]: each line's units from the warehouses its variant was
    reserved in (alphabetical), anything the reservations do not cover from ``fallback``."""
    pools: dict[str, list[list[Any]]] = defaultdict(list)
    for r in sorted(held, key=lambda r: (r.variant_id, r.warehouse_code)):
        pools[r.variant_id].append([r.warehouse_code, r.quantity])
    plan: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_id = {line.id: line for line in order.lines}
    for line in order.lines:
        need = line.quantity
        for pool in pools.get(line.variant_id, []):
            take = min(need, pool[1])
            if take > 0:
                plan[pool[0]][line.id] += take
                pool[1] -= take
                need -= take
        if need > 0:
            if fallback is None:
                raise Problem(
                    409,
                    "allocation_failed",
                    "The order's units are not held in any warehouse, and none exists",
                    order_id=order.id,
                )
            plan[fallback][line.id] += need
    return {
        code: [(by_id[line_id], units) for line_id, units in sorted(lines.items())]
        for code, lines in sorted(plan.items())
    }


async def _fallback_warehouse(conn: AsyncConnection, held: Sequence[Any]) -> str | None:
    if held:
        return str(sorted(r.warehouse_code for r in held)[0])
    active = [w for w in await inventory.list_warehouses(conn) if w.active]
    return active[0].code if active else None


async def allocate_order(conn: AsyncConnection, order_id: str) -> list[FulfilmentInfo]:
    """The order's fulfilments, created from its committed reservations if not there yet.

    Idempotent (unique per order and warehouse): calling it again, or concurrently, creates
    nothing more. 404 for an unknown order; 409 ``order_not_shippable`` for one that is not
    paid (or is cancelled).
    """
    existing = await fulfilments_for_order(conn, order_id)
    if existing:
        return existing
    order = await orders.get_order(conn, order_id)
    if order is None:
        raise not_found("Order", order_id)
    _check_shippable(order)
    held = await inventory.list_reservations(
        conn, state="committed", owner=order.checkout_id, limit=10_000
    )
    plan = _plan_allocation(order, held, await _fallback_warehouse(conn, held))
    now = utcnow()
    for code, lines in plan.items():
        fulfilment_id = new_id("ful")
        made = await conn.execute(
            _insert(conn, FULFILMENTS)
            .values(
                id=fulfilment_id,
                order_id=order_id,
                warehouse_code=code,
                status="pending",
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        if made.rowcount != 1:
            continue  # a concurrent allocation made this one (with its items)
        await conn.execute(
            insert(ITEMS),
            [
                {
                    "id": new_id("fli"),
                    "fulfilment_id": fulfilment_id,
                    "order_id": order_id,
                    "order_line_id": line.id,
                    "variant_id": line.variant_id,
                    "quantity": units,
                    "quantity_claimed": 0,
                    "quantity_shipped": 0,
                }
                for line, units in lines
            ],
        )
    log.info("order %s allocated to %s", order_id, ", ".join(plan) or "nothing")
    return await fulfilments_for_order(conn, order_id)


def _check_shippable(order: orders.OrderInfo) -> None:
    if order.status in _UNPAID:
        raise Problem(
            409,
            "order_not_paid",
            f"The order is {order.status}: only a paid order can be fulfilled",
            status_now=order.status,
        )
    if order.status == "cancelled":
        raise Problem(409, "order_cancelled", "The order was cancelled", status_now=order.status)
    if order.status not in orders.SHIPPABLE:
        raise Problem(
            409,
            "order_not_shippable",
            f"The order is {order.status}; there is nothing left to ship",
            status_now=order.status,
        )


async def cancel_fulfilments(conn: AsyncConnection, order_id: str) -> int:
    """Nothing of a cancelled order is to be picked any more; returns how many were stopped."""
    done = await conn.execute(
        update(FULFILMENTS)
        .where(
            FULFILMENTS.c.order_id == order_id,
            FULFILMENTS.c.status.in_(("pending", "picked", "packed")),
        )
        .values(status="cancelled", updated_at=utcnow())
    )
    return int(done.rowcount or 0)


# -- picking and packing ---------------------------------------------------------------------------


async def _move_fulfilment(
    conn: AsyncConnection, fulfilment_id: str, to: str, sources: tuple[str, ...], actor: str
) -> FulfilmentInfo:
    _check_actor(actor)
    now = utcnow()
    stamp = {"picked_at": now} if to == "picked" else {"packed_at": now}
    done = await conn.execute(
        update(FULFILMENTS)
        .where(FULFILMENTS.c.id == fulfilment_id, FULFILMENTS.c.status.in_(sources))
        .values(status=to, updated_at=now, **stamp)
        .returning(FULFILMENTS.c.order_id)
    )
    moved = done.first()
    found = await get_fulfilment(conn, fulfilment_id)
    if found is None:
        raise not_found("Fulfilment", fulfilment_id)
    if moved is None:
        if found.status == to:
            return found  # a retry: already there
        raise Problem(
            409,
            "invalid_fulfilment_state",
            f"The fulfilment is {found.status}; it cannot be marked {to}",
            status_now=found.status,
        )
    order = await orders.get_order(conn, found.order_id)
    if order is not None and order.status == "paid":
        # Work on the order has started in a warehouse.
        await orders.transition(conn, order.id, "fulfilling", actor=actor, expected_from={"paid"})
    return found


async def mark_picked(conn: AsyncConnection, fulfilment_id: str, *, actor: str) -> FulfilmentInfo:
    return await _move_fulfilment(conn, fulfilment_id, "picked", ("pending",), actor)


async def mark_packed(conn: AsyncConnection, fulfilment_id: str, *, actor: str) -> FulfilmentInfo:
    return await _move_fulfilment(conn, fulfilment_id, "packed", ("pending", "picked"), actor)


async def _refresh_fulfilment_statuses(conn: AsyncConnection, fulfilment_ids: set[str]) -> None:
    """Shipped, partly shipped or delivered, from the items and their shipments."""
    for fulfilment_id in sorted(fulfilment_ids):
        found = await get_fulfilment(conn, fulfilment_id)
        if found is None or found.status == "cancelled":
            continue
        if found.units_shipped == 0:
            continue
        if found.units_shipped < found.units:
            status = "partially_shipped"
        else:
            s, i = SHIPMENTS.c, SHIPMENT_ITEMS.c
            open_ = await conn.scalar(
                select(func.count())
                .select_from(SHIPMENT_ITEMS.join(SHIPMENTS, s.id == i.shipment_id))
                .where(
                    i.fulfilment_item_id.in_([item.id for item in found.items]),
                    s.status != "delivered",
                )
            )
            status = "shipped" if open_ else "delivered"
        if status != found.status:
            await conn.execute(
                update(FULFILMENTS)
                .where(FULFILMENTS.c.id == fulfilment_id)
                .values(status=status, updated_at=utcnow())
            )


# -- shipments -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShipmentRequest:
    carrier: str
    service: str | None = None
    tracking_number: str | None = None
    lines: tuple[tuple[str, int], ...] | None = None  # (order line id, units); None: all unshipped
    fulfilment_id: str | None = None  # only from this fulfilment (warehouse)
    shipment_id: str | None = None  # pre-generated by the client: a retry with it is safe


def _check_request(request: ShipmentRequest) -> tuple[Carrier, dict[str, int] | None]:
    carrier = carrier_registry.get_carrier(request.carrier)
    carrier_registry.check_service(carrier, request.service)
    number = carrier_registry.check_tracking_number(request.tracking_number)
    if carrier.requires_tracking_number and number is None:
        raise validation_problem(
            "tracking_number",
            f"is required for the {carrier.name} carrier",
            code="tracking_number_required",
        )
    if request.shipment_id is not None and (
        not request.shipment_id.startswith("shp_") or not 5 <= len(request.shipment_id) <= 40
    ):
        raise validation_problem("shipment_id", "must be an id starting with shp_")
    if request.lines is None:
        return carrier, None
    if not request.lines:
        raise validation_problem("lines", "must name at least one line (or be left out)")
    wanted: dict[str, int] = defaultdict(int)
    for n, (line_id, quantity) in enumerate(request.lines):
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise validation_problem(f"lines[{n}].quantity", "must be a positive whole number")
        wanted[line_id] += quantity
    return carrier, dict(wanted)


async def _existing_shipment(db: Database, shipment_id: str | None) -> ShipmentInfo | None:
    if shipment_id is None:
        return None
    async with db.connect() as conn:
        return await get_shipment(conn, shipment_id)


def _pick_units(
    order: orders.OrderInfo,
    items: Sequence[FulfilmentItemInfo],
    wanted: dict[str, int] | None,
) -> list[tuple[FulfilmentItemInfo, int]]:
    """Which fulfilment items give the wanted units (all unclaimed ones when ``wanted`` is None);
    422 for an unknown line or more units than are left to ship."""
    lines = {line.id: line for line in order.lines}
    by_line: dict[str, list[FulfilmentItemInfo]] = defaultdict(list)
    for item in items:
        by_line[item.order_line_id].append(item)
    if wanted is None:
        wanted = {
            line_id: sum(i.quantity - i.quantity_claimed for i in found)
            for line_id, found in by_line.items()
        }
        wanted = {k: v for k, v in wanted.items() if v > 0}
    picked: list[tuple[FulfilmentItemInfo, int]] = []
    for line_id, quantity in sorted(wanted.items()):
        if line_id not in lines:
            raise validation_problem(
                "lines", f"the order has no line {line_id!r}", code="unknown_order_line"
            )
        free = sum(i.quantity - i.quantity_claimed for i in by_line.get(line_id, []))
        if quantity > free:
            raise Problem(
                422,
                "quantity_exceeds_unshipped",
                f"Line {line_id} has {free} unit(s) left to ship; {quantity} requested",
                order_line_id=line_id,
                unshipped=free,
                requested=quantity,
            )
        need = quantity
        for item in by_line[line_id]:
            take = min(need, item.quantity - item.quantity_claimed)
            if take > 0:
                picked.append((item, take))
                need -= take
    if not picked:
        raise Problem(409, "nothing_to_ship", "Every unit of this order has shipped already")
    return picked


async def _claim(
    conn: AsyncConnection,
    order: orders.OrderInfo,
    request: ShipmentRequest,
    wanted: dict[str, int] | None,
    shipment_id: str,
    actor: str,
    label: carrier_registry.Label,
    carrier: Carrier,
) -> ShipmentInfo:
    """Step 1: claim the units and record the pending shipment with the amount to capture."""
    await allocate_order(conn, order.id)
    # Lock the order's fulfilment rows: shipments of one order are planned one at a time.
    # (SQLite has no row locks: its BEGIN IMMEDIATE already serialises every writer.)
    await conn.execute(
        select(FULFILMENTS.c.id).where(FULFILMENTS.c.order_id == order.id).with_for_update()
    )
    fulfilments = await fulfilments_for_order(conn, order.id)
    if request.fulfilment_id is not None:
        fulfilments = [f for f in fulfilments if f.id == request.fulfilment_id]
        if not fulfilments:
            raise validation_problem(
                "fulfilment_id", "is not a fulfilment of this order", code="unknown_fulfilment"
            )
    items = [i for f in fulfilments if f.status != "cancelled" for i in f.items]
    picked = _pick_units(order, items, wanted)
    for item, units in picked:
        done = await conn.execute(
            update(ITEMS)
            .where(ITEMS.c.id == item.id, ITEMS.c.quantity_claimed + units <= ITEMS.c.quantity)
            .values(quantity_claimed=ITEMS.c.quantity_claimed + units)
        )
        if done.rowcount != 1:  # cannot happen under the lock; never ship a unit twice
            raise Problem(409, "shipment_conflict", "Another shipment took these units; retry")
    amount = await _capture_amount(conn, order, picked)
    owner = {i.id: f.id for f in fulfilments for i in f.items}
    sources = {owner[item.id] for item, _ in picked}
    now = utcnow()
    await conn.execute(
        insert(SHIPMENTS).values(
            id=shipment_id,
            order_id=order.id,
            fulfilment_id=next(iter(sources)) if len(sources) == 1 else None,
            carrier=carrier.name,
            service=carrier_registry.check_service(carrier, request.service),
            tracking_number=label.tracking_number,
            tracking_url=label.tracking_url,
            label=label.document,
            status="pending",
            currency=order.currency,
            capture_amount=amount,
            created_by=actor,
            created_at=now,
            updated_at=now,
        )
    )
    await conn.execute(
        insert(SHIPMENT_ITEMS),
        [
            {
                "id": new_id("shi"),
                "shipment_id": shipment_id,
                "fulfilment_item_id": item.id,
                "order_line_id": item.order_line_id,
                "quantity": units,
            }
            for item, units in picked
        ],
    )
    found = await get_shipment(conn, shipment_id)
    assert found is not None
    return found


async def _capture_amount(
    conn: AsyncConnection, order: orders.OrderInfo, picked: Sequence[tuple[FulfilmentItemInfo, int]]
) -> int:
    """The shipped units' share of their lines; the order's remainder for the last shipment."""
    if order.total == 0:
        return 0
    # Claims are already counted on the items: "before" is claimed minus this shipment's units.
    claimed_now: dict[str, int] = defaultdict(int)
    remaining_units = 0
    for f in await fulfilments_for_order(conn, order.id):
        if f.status == "cancelled":
            continue
        for item in f.items:
            claimed_now[item.order_line_id] += item.quantity_claimed
            remaining_units += item.quantity - item.quantity_claimed
    if remaining_units == 0:
        taken = await conn.scalar(
            select(func.coalesce(func.sum(SHIPMENTS.c.capture_amount), 0)).where(
                SHIPMENTS.c.order_id == order.id
            )
        )
        return max(order.total - int(taken or 0), 0)
    here: dict[str, int] = defaultdict(int)
    for item, units in picked:
        here[item.order_line_id] += units
    lines = {line.id: line for line in order.lines}
    amount = 0
    for line_id, units in here.items():
        line = lines[line_id]
        after = claimed_now[line_id]
        amount += unit_share(line.total, line.quantity, after) - unit_share(
            line.total, line.quantity, after - units
        )
    return amount


async def _release(db: Database, shipment_id: str) -> bool:
    """Undo a pending shipment whose capture was refused: its claim and its row go away."""

    async def work(conn: AsyncConnection) -> bool:
        found = await get_shipment(conn, shipment_id)
        if found is None or found.status != "pending":
            return False
        await conn.execute(delete(TRACKING).where(TRACKING.c.shipment_id == shipment_id))
        await conn.execute(
            delete(SHIPMENT_ITEMS).where(SHIPMENT_ITEMS.c.shipment_id == shipment_id)
        )
        gone = await conn.execute(
            delete(SHIPMENTS).where(SHIPMENTS.c.id == shipment_id, SHIPMENTS.c.status == "pending")
        )
        if gone.rowcount != 1:
            return False
        for line in sorted(found.lines, key=lambda x: x.fulfilment_item_id):
            await conn.execute(
                update(ITEMS)
                .where(ITEMS.c.id == line.fulfilment_item_id)
                .values(quantity_claimed=ITEMS.c.quantity_claimed - line.quantity)
            )
        return True

    released: bool = await inventory.in_transaction(db, work)
    if released:
        log.info("shipment %s undone: its capture did not go through", shipment_id)
    return released


def capture_key(shipment_id: str) -> str:
    return f"ship:{shipment_id}"


async def _capture(
    db: Database, provider: PaymentProvider, order: orders.OrderInfo, shipment: ShipmentInfo
) -> None:
    """Step 2. Returns when the money is taken; raises (after undoing the claim) when refused,
    or 503 ``capture_pending`` while the provider's answer is unknown (the claim stays)."""
    if shipment.capture_amount == 0 or not order.payment_intent_id:
        return
    try:
        outcome = await payments.capture(
            db, provider, order.payment_intent_id, shipment.capture_amount, capture_key(shipment.id)
        )
    except Problem as exc:
        await _release(db, shipment.id)
        raise Problem(
            402,
            "capture_failed",
            f"The payment could not be captured ({exc.code}); nothing was shipped",
            payment_code=exc.code,
            order_id=order.id,
        ) from exc
    if outcome.pending:
        raise Problem(
            503,
            "capture_pending",
            "The payment provider has not confirmed the capture yet; retry with the same "
            "shipment_id (nothing is captured twice)",
            headers={"Retry-After": "5"},
            shipment_id=shipment.id,
        )
    if not outcome.ok:
        await _release(db, shipment.id)
        raise Problem(
            402,
            "capture_failed",
            f"The payment could not be captured ({outcome.code}); nothing was shipped",
            payment_code=outcome.code,
            order_id=order.id,
        )


async def _complete(db: Database, shipment_id: str, actor: str) -> ShipmentInfo:
    """Step 3: the units leave; the order learns it; the customer gets told."""

    async def work(conn: AsyncConnection) -> ShipmentInfo:
        now = utcnow()
        moved = await conn.execute(
            update(SHIPMENTS)
            .where(SHIPMENTS.c.id == shipment_id, SHIPMENTS.c.status == "pending")
            .values(status="in_transit", shipped_at=now, updated_at=now)
        )
        shipment = await get_shipment(conn, shipment_id)
        if shipment is None:
            raise not_found("Shipment", shipment_id)
        if moved.rowcount != 1:
            return shipment  # finished by an earlier call
        for line in sorted(shipment.lines, key=lambda x: x.fulfilment_item_id):
            await conn.execute(
                update(ITEMS)
                .where(ITEMS.c.id == line.fulfilment_item_id)
                .values(quantity_shipped=ITEMS.c.quantity_shipped + line.quantity)
            )
        order = await orders.record_shipped(
            conn, shipment.order_id, sorted(shipment.line_quantities().items())
        )
        if all(line.quantity_shipped == line.quantity for line in order.lines):
            if order.status != "shipped":
                order = await orders.transition(conn, order.id, "shipped", actor=actor)
        elif order.status == "paid":
            order = await orders.transition(conn, order.id, "fulfilling", actor=actor)
        await _refresh_fulfilment_statuses(
            conn,
            {
                f.id
                for f in await fulfilments_for_order(conn, order.id)
                for i in f.items
                if i.id in {x.fulfilment_item_id for x in shipment.lines}
            },
        )
        await _add_events(
            conn,
            shipment_id,
            [TrackingUpdate("label_created", "Shipping label created", None, now)],
        )
        shipment = await get_shipment(conn, shipment_id)
        assert shipment is not None
        await events.publish(conn, SHIPMENT_CREATED, order.id, _created_payload(order, shipment))
        return shipment

    return await inventory.in_transaction(db, work)


def _created_payload(order: orders.OrderInfo, shipment: ShipmentInfo) -> dict[str, Any]:
    lines = {line.id: line for line in order.lines}
    return {
        "order_id": order.id,
        "shipment_id": shipment.id,
        "user_id": order.user_id,
        "email": order.email,
        "carrier": shipment.carrier,
        "service": shipment.service,
        "tracking_number": shipment.tracking_number,
        "tracking_url": shipment.tracking_url,
        "captured": shipment.capture_amount,
        "currency": shipment.currency,
        "order_status": order.status,
        "lines": [
            {
                "order_line_id": line_id,
                "quantity": quantity,
                "sku": lines[line_id].sku if line_id in lines else None,
                "title": lines[line_id].title if line_id in lines else None,
            }
            for line_id, quantity in sorted(shipment.line_quantities().items())
        ],
    }


async def create_shipment(
    db: Database,
    provider: PaymentProvider,
    order_id: str,
    request: ShipmentRequest,
    *,
    actor: str,
) -> ShipmentInfo:
    """Ship units of an order (all unshipped ones when ``request.lines`` is None), capturing
    their share of the payment first. See the module docstring for the three steps.

    Problems (nothing shipped, nothing captured): 404 unknown order; 409 ``order_not_paid``,
    ``order_cancelled``, ``order_not_shippable``, ``nothing_to_ship``; 422 ``unknown_carrier``,
    ``tracking_number_required``, ``unknown_order_line``, ``quantity_exceeds_unshipped``;
    402 ``capture_failed`` (with the payment's ``payment_code``); 503 ``capture_pending``.
    """
    _check_actor(actor)
    carrier, wanted = _check_request(request)
    existing = await _existing_shipment(db, request.shipment_id)
    if existing is not None:
        if existing.order_id != order_id:
            raise Problem(409, "shipment_exists", "This shipment id belongs to another order")
        return await _resume(db, provider, existing, actor)
    async with db.connect() as conn:
        order = await orders.get_order(conn, order_id)
    if order is None:
        raise not_found("Order", order_id)
    _check_shippable(order)
    shipment_id = request.shipment_id or new_id("shp")
    parcel = Parcel(
        shipment_id=shipment_id,
        order_id=order.id,
        warehouse_code=None,
        address=order.shipping_address,
        units=sum(wanted.values()) if wanted else sum(line.quantity for line in order.lines),
    )
    label = await carrier.create_label(
        parcel, service=request.service, tracking_number=request.tracking_number
    )

    async def claim(conn: AsyncConnection) -> ShipmentInfo:
        fresh = await orders.get_order(conn, order_id)
        if fresh is None:
            raise not_found("Order", order_id)
        _check_shippable(fresh)
        return await _claim(conn, fresh, request, wanted, shipment_id, actor, label, carrier)

    shipment = await inventory.in_transaction(db, claim)
    return await _resume(db, provider, shipment, actor)


async def _resume(
    db: Database, provider: PaymentProvider, shipment: ShipmentInfo, actor: str
) -> ShipmentInfo:
    if shipment.status != "pending":
        return shipment
    async with db.connect() as conn:
        order = await orders.get_order(conn, shipment.order_id)
    if order is None:
        raise not_found("Order", shipment.order_id)
    await _capture(db, provider, order, shipment)
    try:
        return await _complete(db, shipment.id, actor)
    except Problem:
        # The order changed under the capture (e.g. cancelled meanwhile): nothing ships; the
        # cancellation gives the captured money back (it refunds whatever was captured).
        await _release(db, shipment.id)
        raise


async def finish_pending_shipments(
    db: Database,
    provider: PaymentProvider,
    *,
    older_than: datetime | None = None,
    limit: int = 50,
) -> int:
    """Finish (or undo) shipments left pending by a timeout or a crash; returns how many were
    settled either way."""
    query = select(SHIPMENTS.c.id).where(SHIPMENTS.c.status == "pending")
    if older_than is not None:
        query = query.where(SHIPMENTS.c.created_at < older_than)
    async with db.connect() as conn:
        ids = list((await conn.scalars(query.order_by(SHIPMENTS.c.created_at).limit(limit))).all())
    settled = 0
    for shipment_id in ids:
        async with db.connect() as conn:
            shipment = await get_shipment(conn, shipment_id)
        if shipment is None or shipment.status != "pending":
            continue
        try:
            await _resume(db, provider, shipment, "system:fulfilment")
            settled += 1
        except Problem as exc:
            if exc.code != "capture_pending":
                settled += 1
            log.info("shipment %s: %s", shipment_id, exc.code)
    return settled


# -- tracking and delivery -------------------------------------------------------------------------


async def _add_events(
    conn: AsyncConnection, shipment_id: str, updates: Sequence[TrackingUpdate]
) -> int:
    """Write tracking updates not written yet (one per status); returns how many were new."""
    added = 0
    for u in updates:
        done = await conn.execute(
            _insert(conn, TRACKING)
            .values(
                id=new_id("trk"),
                shipment_id=shipment_id,
                status=u.status,
                description=u.description[:200],
                location=u.location[:120] if u.location else None,
                occurred_at=u.occurred_at,
            )
            .on_conflict_do_nothing()
        )
        added += int(done.rowcount or 0)
    return added


async def deliver_shipment(
    conn: AsyncConnection,
    shipment_id: str,
    *,
    actor: str,
    now: datetime | None = None,
) -> ShipmentInfo:
    """The parcel arrived. Idempotent; the order becomes ``delivered`` with its last parcel.
    409 ``shipment_not_shipped`` while its capture is still pending."""
    _check_actor(actor)
    now = now or utcnow()
    shipped_at = await conn.scalar(
        select(SHIPMENTS.c.shipped_at).where(SHIPMENTS.c.id == shipment_id)
    )
    if shipped_at is not None and now < shipped_at:
        raise validation_problem("delivered_at", "cannot be before the parcel shipped")
    moved = await conn.execute(
        update(SHIPMENTS)
        .where(SHIPMENTS.c.id == shipment_id, SHIPMENTS.c.status == "in_transit")
        .values(status="delivered", delivered_at=now, updated_at=now)
    )
    shipment = await get_shipment(conn, shipment_id)
    if shipment is None:
        raise not_found("Shipment", shipment_id)
    if moved.rowcount != 1:
        if shipment.status == "delivered":
            return shipment
        raise Problem(
            409, "shipment_not_shipped", "The shipment has not left yet", status_now=shipment.status
        )
    await _add_events(conn, shipment_id, [TrackingUpdate("delivered", "Delivered", None, now)])
    item_ids = {x.fulfilment_item_id for x in shipment.lines}
    await _refresh_fulfilment_statuses(
        conn,
        {
            f.id
            for f in await fulfilments_for_order(conn, shipment.order_id)
            for i in f.items
            if i.id in item_ids
        },
    )
    order = await orders.get_order(conn, shipment.order_id)
    assert order is not None
    open_ = await conn.scalar(
        select(func.count()).where(
            SHIPMENTS.c.order_id == order.id, SHIPMENTS.c.status != "delivered"
        )
    )
    all_shipped = all(line.quantity_shipped == line.quantity for line in order.lines)
    if all_shipped and not open_ and order.status == "shipped":
        await orders.transition(conn, order.id, "delivered", actor=actor)
    await events.publish(
        conn,
        SHIPMENT_DELIVERED,
        order.id,
        {
            "order_id": order.id,
            "shipment_id": shipment_id,
            "user_id": order.user_id,
            "email": order.email,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
            "delivered_at": now.isoformat(),
        },
    )
    found = await get_shipment(conn, shipment_id)
    assert found is not None
    return found


async def advance_tracking(db: Database, *, now: datetime | None = None, limit: int = 200) -> int:
    """Ask each carrier about its parcels in transit and write what is new; a parcel the carrier
    reports delivered is delivered. Returns how many tracking events were added."""
    now = now or utcnow()
    async with db.connect() as conn:
        rows = (
            await conn.execute(
                select(SHIPMENTS.c.id, SHIPMENTS.c.carrier, SHIPMENTS.c.tracking_number)
                .add_columns(SHIPMENTS.c.shipped_at)
                .where(SHIPMENTS.c.status == "in_transit")
                .order_by(SHIPMENTS.c.shipped_at)
                .limit(limit)
            )
        ).all()
    added = 0
    for row in rows:
        try:
            carrier = carrier_registry.get_carrier(row.carrier)
        except Problem:
            continue
        updates = await carrier.tracking(
            tracking_number=row.tracking_number, shipped_at=row.shipped_at, now=now
        )
        if not updates:
            continue

        async def work(
            conn: AsyncConnection,
            row: Row[Any] = row,
            updates: list[TrackingUpdate] = updates,
        ) -> int:
            fresh = [u for u in updates if u.status != "delivered"]
            count = await _add_events(conn, row.id, fresh)
            arrived = next((u for u in updates if u.status == "delivered"), None)
            if arrived is not None:
                await deliver_shipment(
                    conn, row.id, actor=f"carrier:{row.carrier}", now=arrived.occurred_at
                )
                count += 1
            return count

        try:
            added += await inventory.in_transaction(db, work)
        except Exception:
            log.exception("shipment %s: tracking update failed; will retry", row.id)
    return added


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


async def order_shipments(executor: Executor, order: orders.OrderInfo) -> list[dict[str, Any]]:
    """The order page's shipments (registered with the orders module by ``modules.wire``)."""
    return [shipment_view(s) for s in await shipments_for_order(executor, order.id)]
