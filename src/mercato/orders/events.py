"""What the orders module declares to the worker: its cancellation workflow, the outbox
consumer by which an order moved to ``cancelled`` without that workflow (a plain transition)
still gets its stock and its money back, and the ``orders.sales_rank`` job, which recomputes
the products' sales rank from the order lines every five minutes (a pass that changes nothing
writes and publishes nothing; see :mod:`mercato.orders.sales_rank`).

Cancellations the processor has not finished wait on their run; the core job
``workflows.recover`` resumes them (no retry loop of this module's own).
"""

from __future__ import annotations

from mercato.db import utcnow
from mercato.events import Consumer, Event
from mercato.orders import service
from mercato.runtime import Runtime
from mercato.worker import Job

CANCELLATION_CONSUMER = "orders-cancellation"
SALES_RANK_INTERVAL = 300.0


async def take_over_cancellation(runtime: Runtime, event: Event) -> None:
    """``OrderStatusChanged`` to ``cancelled``: the cancellation's run, if it has none yet."""
    if event.payload.get("to") != "cancelled":
        return
    await service.take_over(runtime, str(event.payload.get("order_id") or event.aggregate_id))


CONSUMERS = (
    Consumer.of(CANCELLATION_CONSUMER, [service.ORDER_STATUS_CHANGED], take_over_cancellation),
)
WORKFLOWS = (service.CANCELLATION,)


async def refresh_sales_ranks(runtime: Runtime) -> int:
    """How many products' sales figures changed."""
    settings = runtime.settings
    async with runtime.db.transaction() as uow:
        changed = await service.refresh_sales_ranks(
            uow,
            now=utcnow(),
            window_days=settings.sales_rank_window_days,
            half_life_days=settings.sales_rank_half_life_days,
        )
    return len(changed)


JOBS = (Job("orders.sales_rank", SALES_RANK_INTERVAL, refresh_sales_ranks),)
