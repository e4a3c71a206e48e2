"""Claims: one holder at a time across processes (here: two claimants with their own names, as
two workers would be), a lease that passes when its holder stops renewing it, and a shared
"next due" so that workers split a job's turns."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mercato.claims import Claimant, ClaimLost
from mercato.db import Database, clock_override, utcnow


async def test_one_holder_at_a_time_until_released(db: Database) -> None:
    first, second = Claimant(db, 30, holder="worker-a"), Claimant(db, 30, holder="worker-b")
    assert await first.take("outbox:mail") is True
    assert await second.take("outbox:mail") is False
    assert await first.take("outbox:mail") is False  # not re-entrant either
    await first.release("outbox:mail")
    assert await second.take("outbox:mail") is True


async def test_a_holder_that_stops_renewing_loses_the_claim_and_its_writes(db: Database) -> None:
    dead, alive = Claimant(db, 30, holder="killed"), Claimant(db, 30, holder="survivor")
    assert await dead.take("job:expire")
    later = utcnow() + timedelta(seconds=31)
    with clock_override(lambda: later):
        assert await alive.take("job:expire") is True
    with pytest.raises(ClaimLost):
        async with db.transaction() as uow:
            await dead.fence(uow, "job:expire")
    async with db.transaction() as uow:
        await alive.fence(uow, "job:expire")  # the new holder still writes


async def test_workers_split_a_jobs_turns(db: Database) -> None:
    a, b = Claimant(db, 30, holder="worker-a"), Claimant(db, 30, holder="worker-b")
    async with a.holding("job:rank", due_only=True) as held:
        assert held is not None
        held.due_at = utcnow() + timedelta(minutes=5)
    # Not due yet for anyone; a wake-up for the job (not due_only) still runs it.
    assert await b.take("job:rank", due_only=True) is False
    state = await b.state("job:rank")
    assert state is not None and state.holder is None and state.due_at is not None
    assert await b.take("job:rank") is True
