"""The worker's rebuild: every hour, when enough orders arrived
since the last build (a quiet shop does nothing but one count). The ``StockChanged`` consumer
that sends the wishlist's back-in-stock mails, and the daily job forgetting stale guests'
recently viewed lists."""

from __future__ import annotations

from mercato.db import UnitOfWork
from mercato.events import Consumer, Event
from mercato.recommendations import service
from mercato.runtime import Runtime
from mercato.worker import Job


async def rebuild(runtime: Runtime) -> int:
    return await service.rebuild_if_due(runtime)


REBUILD_INTERVAL = 3600.0
JOBS: tuple[Job, ...] = (Job("recommendations.rebuild", REBUILD_INTERVAL, rebuild),)


# --------------------------------------------------------------------------------------------
# The shopper's signals: back-in-stock mails and forgetting guests who never came back.

RESTOCK_CONSUMER = "recommendations-restock"


async def check_restock(runtime: Runtime, event: Event) -> None:
    """A variant's stock moved: arm or tell the wishlist entries watching it (idempotent: the
    outbox may deliver the same event again, even to two workers at once)."""
    variant_id = event.payload.get("variant_id")
    if not isinstance(variant_id, str) or not variant_id:
        return

    async def check(uow: UnitOfWork) -> int:
        return await service.restock_check(uow, variant_id)

    await runtime.db.run(check)


async def forget_guests(runtime: Runtime) -> int:
    async with runtime.db.transaction() as uow:
        return await service.forget_stale_guest_views(uow)


FORGET_INTERVAL = 24 * 3600.0
CONSUMERS = (Consumer.of(RESTOCK_CONSUMER, ("StockChanged",), check_restock),)
JOBS = (*JOBS, Job("recommendations.forget_guest_views", FORGET_INTERVAL, forget_guests))
