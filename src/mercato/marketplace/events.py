"""The worker recomputes the sellers' performance figures (and so their buy-box standing)
every hour from the registered readers."""

from __future__ import annotations

from mercato.marketplace import service
from mercato.runtime import Runtime
from mercato.worker import Job

PERFORMANCE_INTERVAL = 3600.0


async def refresh_performance(runtime: Runtime) -> int:
    async with runtime.db.transaction() as uow:
        return await service.refresh_performance(uow, service.Thresholds.of(runtime.settings))


JOBS = (Job("marketplace.performance", PERFORMANCE_INTERVAL, refresh_performance),)
