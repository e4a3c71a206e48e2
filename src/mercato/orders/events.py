"""The orders worker job: cancellations whose stock or money step did not finish."""

from __future__ import annotations

from datetime import timedelta

from mercato.db import utcnow
from mercato.orders import service
from mercato.payments.service import get_provider
from mercato.runtime import Runtime
from mercato.worker import Job

# A cancel request finishes its own steps; the job only picks up what was left behind.
GRACE = timedelta(seconds=30)


async def finish_cancellations(runtime: Runtime) -> int:
    """Restock and void/refund cancelled orders left unfinished; returns how many finished."""
    return await service.finish_cancellations(
        runtime.db, get_provider(runtime), older_than=utcnow() - GRACE
    )


JOBS = (Job("orders.finish_cancellations", 60, finish_cancellations),)
