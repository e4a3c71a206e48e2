"""Tracking and delivery: the carriers' tracking events, and a parcel's arrival.

**Delivery** (:func:`deliver_shipment`): by staff, or by the sandbox carrier's timeline (the
worker job ``fulfilment.advance_tracking``); the order becomes ``delivered`` when every unit has
shipped and every shipment arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, select, update

from mercato import events
from mercato.db import UnitOfWork, utcnow
from mercato.fulfilment import carriers as carrier_registry
from mercato.fulfilment.allocation import refresh_fulfilment_statuses
from mercato.fulfilment.carriers import TrackingUpdate
from mercato.fulfilment.queries import (
    SHIPMENTS,
    TRACKING,
    ShipmentInfo,
    check_actor,
    dialect_insert,
    fulfilments_for_order,
    get_shipment,
)
from mercato.ids import new_id
from mercato.orders import service as orders
from mercato.problems import Problem, not_found, validation_problem
from mercato.runtime import Runtime

log = logging.getLogger("mercato.fulfilment")

SHIPMENT_DELIVERED = "ShipmentDelivered"
CLOCK_SKEW = timedelta(minutes=5)
"""How far ahead of our clock a reported delivery time may be (the reporter's clock)."""


# -- tracking and delivery -------------------------------------------------------------------------


async def add_events(uow: UnitOfWork, shipment_id: str, updates: Sequence[TrackingUpdate]) -> int:
    """Write tracking updates not written yet (one per status); returns how many were new."""
    added = 0
    for u in updates:
        done = await uow.changed(
            dialect_insert(uow, TRACKING)
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
        added += done
    return added


async def deliver_shipment(
    uow: UnitOfWork,
    shipment_id: str,
    *,
    actor: str,
    delivered_at: datetime | None = None,
    now: datetime | None = None,
    order_id: str | None = None,
) -> ShipmentInfo:
    """The parcel arrived (``delivered_at``: when, as reported; default ``now``, the clock).
    Idempotent; the order becomes ``delivered`` with its last parcel. ``order_id``: the order
    it must belong to (404 otherwise). 422 when the reported time is in the future or before
    the parcel left; 409 ``shipment_not_shipped`` while its capture is still pending."""
    check_actor(actor)
    if order_id is not None:
        found = await get_shipment(uow, shipment_id)
        if found is None or found.order_id != order_id:
            raise not_found("Shipment", shipment_id)
    clock = now or utcnow()
    if delivered_at is not None and delivered_at > clock + CLOCK_SKEW:
        raise validation_problem("delivered_at", "cannot be in the future")
    now = delivered_at or clock
    shipped_at = await uow.scalar(
        select(SHIPMENTS.c.shipped_at).where(SHIPMENTS.c.id == shipment_id)
    )
    if shipped_at is not None and now < shipped_at:
        raise validation_problem("delivered_at", "cannot be before the parcel shipped")
    moved = await uow.changed(
        update(SHIPMENTS)
        .where(SHIPMENTS.c.id == shipment_id, SHIPMENTS.c.status == "in_transit")
        .values(status="delivered", delivered_at=now, updated_at=now)
    )
    shipment = await get_shipment(uow, shipment_id)
    if shipment is None:
        raise not_found("Shipment", shipment_id)
    if moved != 1:
        if shipment.status == "delivered":
            return shipment
        raise Problem(
            409, "shipment_not_shipped", "The shipment has not left yet", status_now=shipment.status
        )
    await add_events(uow, shipment_id, [TrackingUpdate("delivered", "Delivered", None, now)])
    item_ids = {x.fulfilment_item_id for x in shipment.lines}
    await refresh_fulfilment_statuses(
        uow,
        {
            f.id
            for f in await fulfilments_for_order(uow, shipment.order_id)
            for i in f.items
            if i.id in item_ids
        },
    )
    order = await orders.get_order(uow, shipment.order_id)
    assert order is not None
    open_ = await uow.scalar(
        select(func.count()).where(
            SHIPMENTS.c.order_id == order.id, SHIPMENTS.c.status != "delivered"
        )
    )
    all_shipped = all(line.quantity_shipped == line.quantity for line in order.lines)
    if all_shipped and not open_ and order.status == "shipped":
        await orders.transition(uow, order.id, "delivered", actor=actor)
    await events.publish(
        uow,
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
    found = await get_shipment(uow, shipment_id)
    assert found is not None
    return found


async def advance_tracking(
    runtime: Runtime, *, now: datetime | None = None, limit: int = 200
) -> int:
    """Ask each carrier about its parcels in transit and write what is new; a parcel the carrier
    reports delivered is delivered. Returns how many tracking events were added.

    A process over many units of work rather than a rule: each carrier is asked outside any
    transaction, then each parcel's news is written in a unit of work of its own."""
    db = runtime.db
    now = now or utcnow()
    async with db.transaction() as uow:
        rows = (
            await uow.execute(
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
            uow: UnitOfWork,
            row: Row[Any] = row,
            updates: list[TrackingUpdate] = updates,
        ) -> int:
            fresh = [u for u in updates if u.status != "delivered"]
            count = await add_events(uow, row.id, fresh)
            arrived = next((u for u in updates if u.status == "delivered"), None)
            if arrived is not None:
                await deliver_shipment(
                    uow,
                    row.id,
                    actor=f"carrier:{row.carrier}",
                    delivered_at=arrived.occurred_at,
                    now=now,
                )
                count += 1
            return count

        try:
            added += await db.run(work)
        except Exception:
            log.exception("shipment %s: tracking update failed; will retry", row.id)
    return added
