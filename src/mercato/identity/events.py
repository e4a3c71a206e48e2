"""Identity's background work: forgetting tokens that can never be used again.

Expired and revoked tokens are kept for a while (so an old token is reported as expired or
revoked rather than unknown, which helps clients and support), then deleted so the table does
not grow with every login forever.
"""

from __future__ import annotations

from datetime import timedelta

from mercato.identity import service
from mercato.runtime import Runtime
from mercato.worker import Job

TOKEN_RETENTION = timedelta(days=30)


async def purge_expired_tokens(runtime: Runtime) -> int:
    async with runtime.db.transaction() as uow:
        return await service.purge_tokens(uow, TOKEN_RETENTION)


JOBS = (Job("identity.purge_tokens", 3600, purge_expired_tokens),)
