"""A payment processor that is slow or never answers: every call is bounded by the payment
timeout, the checkout answers (placed, or ``payment_timeout`` while its outcome is unknown),
nothing is charged twice, and the workflow finishes once the processor answers again. The
request id of the checkout is on the worker's log lines when it finishes the run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import select

from mercato.checkout import service
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.logs import bound_request_id
from mercato.payments import service as payments
from mercato.problems import Problem
from mercato.runtime import Runtime
from tests.checkout.conftest import Shop, check_invariants, provider_of, stock
from tests.checkout.test_recovery import DECLINED, REQUEST, recover_later, started

T = TypeVar("T")


@pytest.fixture
def runtime(runtime: Runtime) -> Runtime:
    runtime.settings.payment_timeout_seconds = 0.05
    return runtime


def outcomes(outcome: str) -> float:
    """Checkout runs that ended so in this process (a Prometheus counter)."""
    labels = {"workflow": "checkout", "outcome": outcome}
    return REGISTRY.get_sample_value("mercato_workflow_outcomes_total", labels) or 0.0


async def bounded(work: Awaitable[T]) -> T:
    # Not a speed assertion: without the payment timeout this would wait for an hour.
    return await asyncio.wait_for(work, 60)


async def test_a_slow_processor_that_charged_places_the_order_once(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    placed = outcomes("completed")
    # The charge is made, then the answer never comes: the lookup by key finds it.
    provider_of(runtime).inject_fault("authorize", "slow_after")
    answer = await bounded(service.checkout(runtime, buyer.user, "k", REQUEST))
    assert answer["status"] == "paid"
    assert outcomes("completed") == placed + 1
    totals = await check_invariants(db)
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (3, 0)


async def test_a_processor_that_never_answers_waits_then_the_worker_finishes(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    provider = provider_of(runtime)
    provider.inject_fault("authorize", "slow_before", times=payments.SEND_ATTEMPTS)
    provider.inject_fault("lookup", "slow_before", times=2 * payments.SEND_ATTEMPTS)
    with bound_request_id("req-slow-1"), pytest.raises(Problem) as caught:
        await bounded(service.checkout(runtime, buyer.user, "k", REQUEST))
    assert caught.value.code == "payment_timeout"
    assert (await check_invariants(db)).checkouts == {"waiting": 1}

    provider.clear_faults()
    assert await bounded(recover_later(runtime)) == 1  # the worker's job, with no request
    totals = await check_invariants(db)
    assert totals.checkouts == {"completed": 1}
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (3, 0)
    # The worker drove the run under the checkout's request id: the order's event carries it.
    async with db.transaction() as uow:
        placed = (
            await uow.scalars(select(OutboxEvent).where(OutboxEvent.type == "OrderPlaced"))
        ).one()
    assert placed.payload["_request_id"] == "req-slow-1"


async def test_a_declined_checkout_counts_as_compensated(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    before = outcomes("compensated"), outcomes("completed")
    with pytest.raises(Problem) as caught:
        await service.checkout(runtime, buyer.user, "k", DECLINED)
    assert caught.value.code == "payment_declined"
    assert (outcomes("compensated"), outcomes("completed")) == (before[0] + 1, before[1])
    assert await stock(db, variant) == (5, 0)
