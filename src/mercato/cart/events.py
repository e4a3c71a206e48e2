"""Cart background jobs: abandoned guest carts expire."""

from __future__ import annotations

import logging

from mercato.cart import service
from mercato.runtime import Runtime
from mercato.worker import Job

log = logging.getLogger("mercato.cart")

_BATCH = 500


async def expire_guest_carts(runtime: Runtime) -> int:
    """Delete guest carts past their expiry, in short batches; how many were deleted."""
    cache = service.cache_for(runtime)
    total = 0
    while True:
        async with runtime.db.transaction() as uow:
            deleted = await service.expire_guest_carts(uow, batch=_BATCH)
            if cache is not None and deleted:
                cache.invalidate_after_commit(uow, deleted)
        total += len(deleted)
        if len(deleted) < _BATCH:
            break
    if total:
        log.info("expired %d guest carts", total)
    return total


JOBS = (Job("cart.expire_guests", 3600, expire_guest_carts),)
