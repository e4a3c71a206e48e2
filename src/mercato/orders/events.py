"""What the orders module declares to the worker: its cancellation workflow, and the outbox
consumer by which an order moved to ``cancelled`` without that workflow (a plain transition)
still gets its stock and its money back.

Cancellations the processor has not finished wait on their run; the core job
``workflows.recover`` resumes them (no retry loop of this module's own).
"""

from __future__ import annotations

from mercato.events import Consumer, Event
from mercato.orders import service
from mercato.runtime import Runtime

CANCELLATION_CONSUMER = "orders-cancellation"


async def take_over_cancellation(runtime: Runtime, event: Event) -> None:
    """``OrderStatusChanged`` to ``cancelled``: the cancellation's run, if it has none yet."""
    if event.payload.get("to") != "cancelled":
        return
    await service.take_over(runtime, str(event.payload.get("order_id") or event.aggregate_id))


CONSUMERS = (
    Consumer.of(CANCELLATION_CONSUMER, [service.ORDER_STATUS_CHANGED], take_over_cancellation),
)
WORKFLOWS = (service.CANCELLATION,)
