"""The worker's rebuild: every hour, when enough orders arrived
since the last build (a quiet shop does nothing but one count)."""

from __future__ import annotations

from mercato.recommendations import service
from mercato.runtime import Runtime
from mercato.worker import Job


async def rebuild(runtime: Runtime) -> int:
    return await service.rebuild_if_due(runtime)


REBUILD_INTERVAL = 3600.0
JOBS = (Job("recommendations.rebuild", REBUILD_INTERVAL, rebuild),)
