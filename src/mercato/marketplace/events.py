"""The worker recomputes the sellers' performance figures (and so their buy-box standing)
every hour from the registered readers, and feeds the ledger from the orders' events (see
:mod:`mercato.marketplace.split`)."""

from __future__ import annotations

from mercato.events import Consumer, Event
from mercato.marketplace import service
from mercato.runtime import Runtime
from mercato.worker import Job

PERFORMANCE_INTERVAL = 3600.0


async def refresh_performance(runtime: Runtime) -> int:
    async with runtime.db.transaction() as uow:
        return await service.refresh_performance(uow, service.Thresholds.of(runtime.settings))


JOBS = (Job("marketplace.performance", PERFORMANCE_INTERVAL, refresh_performance),)


SALES_CONSUMER = "marketplace-sales"


async def record_sales(runtime: Runtime, event: Event) -> None:
    """``OrderPlaced``: each seller's part is a sale in the ledger (commission frozen now);
    ``OrderStatusChanged`` to ``cancelled``: what is left of each is undone; ``RefundIssued``
    (a return's refund): each seller part's share is a refund of its sale. Idempotent. One
    consumer for the three, so that a part's sale is always recorded before its refunds."""
    order_id = str(event.payload.get("order_id") or event.aggregate_id)
    async with runtime.db.transaction() as uow:
        if event.type == "OrderPlaced":
            await service.record_order_sales(uow, order_id)
        elif event.type == "RefundIssued":
            shares = [(str(p["part_id"]), int(p["amount"])) for p in event.payload.get("parts", ())]
            await service.record_return_refunds(
                uow, str(event.payload["return_id"]), shares, event.occurred_at
            )
        elif event.payload.get("to") == "cancelled":
            await service.record_order_cancellation(uow, order_id)


CONSUMERS = (
    Consumer.of(
        SALES_CONSUMER, ("OrderPlaced", "OrderStatusChanged", "RefundIssued"), record_sales
    ),
)
