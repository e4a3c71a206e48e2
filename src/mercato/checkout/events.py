"""The checkout worker job: checkouts left half-way (a process died between two steps) are
finished or undone. See :mod:`mercato.checkout.saga` for what happens to each."""

from __future__ import annotations

from mercato.checkout import saga
from mercato.runtime import Runtime
from mercato.worker import Job


async def recover_checkouts(runtime: Runtime) -> int:
    """Recover sagas whose row has not moved for ``saga.STUCK_AFTER_SECONDS``."""
    return await saga.recover_stuck_sagas(runtime, older_than=saga.STUCK_AFTER_SECONDS)


JOBS = (Job("checkout.recover", 30, recover_checkouts),)
