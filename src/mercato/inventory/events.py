"""The inventory worker job: reservations whose time ran out give their units back."""

from __future__ import annotations

from mercato.db import UnitOfWork, utcnow
from mercato.inventory import service
from mercato.runtime import Runtime
from mercato.worker import Job

EXPIRE_BATCH = 500


async def _expire_batch(uow: UnitOfWork) -> int:
    return await service.expire_due(uow, utcnow(), EXPIRE_BATCH)


async def expire_reservations(runtime: Runtime) -> int:
    """Expire due reservations, one short transaction per batch; returns how many."""
    total = 0
    while True:
        done = await runtime.db.run(_expire_batch)
        total += done
        if done < EXPIRE_BATCH:
            return total


# Reservations hold for minutes (``reservation_ttl_seconds``): releasing one a few seconds after
# it expired costs nothing, and an idle shop wakes less often.
EXPIRE_INTERVAL = 15.0

JOBS = (Job("inventory.expire", EXPIRE_INTERVAL, expire_reservations),)
