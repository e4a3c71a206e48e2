"""What the fulfilment module declares to the worker: allocation when an order is placed,
stopping the picking of a cancelled order, the carriers' tracking updates, and the
ship-and-capture workflow (a shipment whose capture was left unknown waits on its run; the core
job ``workflows.recover`` finishes it).

The consumers are delivered at least once by the worker's outbox pass and are idempotent:
allocation is unique per (order, warehouse), cancelling a cancelled fulfilment changes nothing.
"""

from __future__ import annotations

import logging

from mercato.events import Consumer, Event, dispatcher
from mercato.fulfilment import service
from mercato.orders import service as orders
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.worker import Job

log = logging.getLogger("mercato.fulfilment")

ALLOCATE_CONSUMER = "fulfilment-allocate"
CANCEL_CONSUMER = "fulfilment-cancel"

TRACKING_INTERVAL = 30.0


async def allocate(runtime: Runtime, event: Event) -> None:
    """``OrderPlaced``: split the order over the warehouses that hold its units."""
    order_id = str(event.payload.get("order_id") or event.aggregate_id)
    try:
        await runtime.db.run(lambda uow: service.allocate_order(uow, order_id))
    except Problem as exc:
        # Cancelled (or gone) before we got here: nothing to pick.
        log.info("order %s not allocated: %s", order_id, exc.code)


async def stop_cancelled(runtime: Runtime, event: Event) -> None:
    """``OrderStatusChanged`` to ``cancelled``: its fulfilments are no longer to be picked."""
    if event.payload.get("to") != "cancelled":
        return
    order_id = str(event.payload.get("order_id") or event.aggregate_id)
    async with runtime.db.transaction() as uow:
        await service.cancel_fulfilments(uow, order_id)


async def consume_outbox(runtime: Runtime) -> int:
    """This module's share of the worker's outbox pass (the worker delivers to every consumer)."""
    return await dispatcher.dispatch_once(runtime, only=(ALLOCATE_CONSUMER, CANCEL_CONSUMER))


async def advance_tracking(runtime: Runtime) -> int:
    """New tracking events from the carriers (the sandbox carrier's parcels move by themselves)."""
    return await service.advance_tracking(runtime)


CONSUMERS = (
    Consumer.of(ALLOCATE_CONSUMER, [orders.ORDER_PLACED], allocate),
    Consumer.of(CANCEL_CONSUMER, [orders.ORDER_STATUS_CHANGED], stop_cancelled),
)
JOBS = (Job("fulfilment.advance_tracking", TRACKING_INTERVAL, advance_tracking),)
WORKFLOWS = (service.SHIP_AND_CAPTURE,)
