"""The returns worker job: refunds of received returns that did not finish (the payment
provider timed out or was down); each is retried with its own key, so it is made once."""

from __future__ import annotations

from mercato.db import utcnow
from mercato.payments.service import get_provider
from mercato.returns import service
from mercato.runtime import Runtime
from mercato.worker import Job


async def finish_refunds(runtime: Runtime) -> int:
    """Finish refunds left behind; returns how many are now done."""
    return await service.finish_refunds(
        runtime.db, get_provider(runtime), older_than=utcnow() - service.REFUND_GRACE
    )


JOBS = (Job("returns.finish_refunds", 60, finish_refunds),)
