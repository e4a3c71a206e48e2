"""Payments' background work: finishing operations whose provider answer was lost.

A capture, void or refund left pending (the process died, or the provider stayed silent through
every retry) is looked up at the provider by its idempotency key and settled, or resent with the
same key. Authorizations are left to their owner (the checkout workflow), which decides whether to
go on or to void; :func:`mercato.payments.service.recover` settles them when asked. The
workflows that move money (cancellation, ship-and-capture, return-and-refund) retry their own
operations with the same keys; this job is the safety net under all of them.
"""

from __future__ import annotations

from datetime import timedelta

from mercato.db import utcnow
from mercato.payments import service
from mercato.runtime import Runtime
from mercato.worker import Job

STALE_AFTER = timedelta(minutes=5)


async def recover_pending_operations(runtime: Runtime) -> int:
    provider = service.get_provider(runtime)
    async with runtime.db.transaction() as uow:
        intent_ids = await service.pending_intents(
            uow,
            older_than=utcnow() - STALE_AFTER,
            operations=("capture", "void", "refund"),
        )
    for intent_id in intent_ids:
        await service.recover(runtime.db, provider, intent_id)
    return len(intent_ids)


JOBS = (Job("payments.recover_pending", 60, recover_pending_operations),)
