"""The worker's flash-sale job: every 15 s, sales that started and have not ended are ended
past their end time, else get an admission pass and a reconciliation of the gate with the
database. With no sale running it is one indexed read."""

from __future__ import annotations

from mercato.flashsale import service
from mercato.runtime import Runtime
from mercato.worker import Job


async def watch(runtime: Runtime) -> int:
    return await service.watch_sales(runtime)


WATCH_INTERVAL = 15.0
JOBS = (Job("flashsale.watch", WATCH_INTERVAL, watch),)
