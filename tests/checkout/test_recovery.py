"""Crash safety: the process dies at every step boundary, recovery finishes or undoes the saga.

Afterwards every checkout is either a paid order with its stock sold and its promo use final,
or fully compensated (stock back, promo use back, any authorization voided), and the sandbox
processor holds no charge without an order.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from mercato import worker
from mercato.checkout import saga, service
from mercato.checkout.models import sagas
from mercato.db import Database, utcnow
from mercato.inventory import service as inventory
from mercato.payments import service as payments
from mercato.problems import Problem
from mercato.runtime import Runtime
from tests.checkout.conftest import (
    ADDRESS,
    Customer,
    Shop,
    cart_lines,
    check_invariants,
    fill_cart,
    make_customer,
    make_variant,
    provider_of,
    stock,
)

REQUEST = saga.CheckoutRequest(
    shipping_address=ADDRESS,
    shipping_method="standard",
    payment_token="tok_visa",
    promo_code="WELCOME10",
)

# Where the process died → what recovery makes of the saga.
EXPECTED = {
    "after_start": "failed",  # stock and promo use held, nothing charged: all given back
    "after_authorize": "completed",  # the payment went through: the order is placed
    "after_order": "completed",
}


async def promo_used(db: Database) -> int:
    async with db.connect() as conn:
        promo = await service.get_promo_by_code(conn, "WELCOME10")
    assert promo is not None
    return promo.used_count


async def started(db: Database) -> tuple[Customer, str]:
    variant = await make_variant(db, price=3000, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))
    return buyer, variant


def test_every_boundary_is_covered() -> None:
    assert set(EXPECTED) == set(saga.BOUNDARIES)


@pytest.mark.parametrize("boundary", saga.BOUNDARIES)
async def test_crash_at_each_boundary_then_recovery(
    runtime: Runtime, db: Database, shop: Shop, boundary: str
) -> None:
    buyer, variant = await started(db)
    saga.CRASH_POINTS.add(boundary)
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "crash-key", REQUEST)
    saga.CRASH_POINTS.clear()

    # After the order there is nothing left to do: the cart was cleared with it.
    left = 0 if boundary == "after_order" else 1
    assert await saga.recover_stuck_sagas(runtime, older_than=0) == left
    totals = await check_invariants(db)
    expected = EXPECTED[boundary]
    assert totals.sagas == {expected: 1}
    assert totals.active_reservations == 0
    if expected == "completed":
        assert totals.orders == 1 and totals.live_charges == 1
        assert await stock(db, variant) == (3, 0)
        assert await promo_used(db) == 1
        assert await cart_lines(db, buyer.id) == []
        replay = await saga.checkout(runtime, buyer.user, "crash-key", REQUEST)
        assert replay["status"] == "paid" and replay["discount"] == "6.00"
    else:
        assert totals.orders == 0 and totals.live_charges == 0
        assert await stock(db, variant) == (5, 0)
        assert await promo_used(db) == 0
        assert await cart_lines(db, buyer.id) == [(variant, 2)]
        with pytest.raises(Problem) as caught:
            await saga.checkout(runtime, buyer.user, "crash-key", REQUEST)
        assert caught.value.code == "checkout_interrupted"
    # Nothing is left for a second run.
    assert await saga.recover_stuck_sagas(runtime, older_than=0) == 0


async def test_recent_sagas_are_left_to_their_request(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, _ = await started(db)
    saga.CRASH_POINTS.add("after_start")
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    assert await saga.recover_stuck_sagas(runtime) == 0  # not stuck for long enough yet
    assert (await check_invariants(db)).sagas == {"priced": 1}


async def test_a_lost_processor_answer_is_resolved_by_recovery(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    provider = provider_of(runtime)
    # Every send reaches the processor but its answer is lost, and so is every lookup.
    provider.inject_fault("authorize", "timeout_after", times=payments.SEND_ATTEMPTS)
    provider.inject_fault("lookup", "timeout_before", times=2 * payments.SEND_ATTEMPTS)
    with pytest.raises(Problem) as caught:
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    assert caught.value.code == "payment_timeout"
    provider.clear_faults()

    assert await saga.recover_stuck_sagas(runtime, older_than=0) == 1
    totals = await check_invariants(db)
    assert totals.sagas == {"completed": 1}
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (3, 0)


async def test_recovery_racing_the_request_voids_the_late_authorization(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)

    async def recover_now(boundary: str) -> None:
        if boundary == "after_start":
            await saga.recover_stuck_sagas(runtime, older_than=0)

    saga.BOUNDARY_HOOKS.append(recover_now)
    try:
        with pytest.raises(Problem) as caught:
            await saga.checkout(runtime, buyer.user, "k", REQUEST)
    finally:
        saga.BOUNDARY_HOOKS.clear()
    assert caught.value.code == "checkout_interrupted"
    totals = await check_invariants(db)
    assert totals.sagas == {"failed": 1} and totals.orders == 0 and totals.live_charges == 0
    async with db.connect() as conn:
        summary = await payments.sandbox_charge_summary(conn)
    assert summary.voided == 1
    assert await stock(db, variant) == (5, 0)


async def test_a_replay_of_a_stale_saga_recovers_it(
    runtime: Runtime, db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    buyer, _ = await started(db)
    saga.CRASH_POINTS.add("after_authorize")
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    saga.CRASH_POINTS.clear()
    monkeypatch.setattr(saga, "STUCK_AFTER_SECONDS", 0.0)
    answer = await saga.checkout(runtime, buyer.user, "k", REQUEST)
    assert answer["status"] == "paid"
    assert (await check_invariants(db)).orders == 1


async def test_the_worker_runs_recovery(runtime: Runtime) -> None:
    assert "checkout.recover" in {j.name for j in worker.jobs()}


async def test_a_replay_while_the_first_request_runs_is_told_to_retry(
    runtime: Runtime, db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    buyer, _ = await started(db)
    saga.CRASH_POINTS.add("after_start")
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    saga.CRASH_POINTS.clear()
    monkeypatch.setattr(saga, "REPLAY_WAIT_SECONDS", 0.05)
    with pytest.raises(Problem) as caught:
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    assert caught.value.status == 409 and caught.value.code == "checkout_in_progress"
    assert caught.value.headers == {"Retry-After": "1"}


async def expire_all_reservations(db: Database) -> None:
    async with db.connect() as conn:
        await inventory.expire_due(conn, utcnow() + timedelta(days=1))


async def test_an_expired_reservation_is_taken_again_when_the_order_is_made(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    saga.CRASH_POINTS.add("after_authorize")
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    saga.CRASH_POINTS.clear()
    await expire_all_reservations(db)

    assert await saga.recover_stuck_sagas(runtime, older_than=0) == 1
    totals = await check_invariants(db)
    assert totals.sagas == {"completed": 1} and totals.orders == 1
    assert await stock(db, variant) == (3, 0)


async def test_stock_sold_meanwhile_refunds_the_authorization(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    saga.CRASH_POINTS.add("after_authorize")
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    saga.CRASH_POINTS.clear()
    await expire_all_reservations(db)
    async with db.connect() as conn:  # someone else buys the last units meanwhile
        await inventory.reserve(conn, "other-checkout", [(variant, 5)])
        await inventory.commit(conn, "other-checkout")

    assert await saga.recover_stuck_sagas(runtime, older_than=0) == 1
    totals = await check_invariants(db)
    assert totals.sagas == {"failed": 1} and totals.orders == 0 and totals.live_charges == 0
    assert await promo_used(db) == 0
    with pytest.raises(Problem) as caught:
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    assert caught.value.code == "out_of_stock"


async def set_saga_row(db: Database, **values: str) -> None:
    """Rewrite the only saga row (test setup: a row as an earlier version left it)."""
    async with db.connect() as conn:
        await conn.execute(update(sagas).values(**values))


@pytest.mark.parametrize("status", ["started", "reserved"])
async def test_rows_of_the_earlier_separate_steps_are_still_undone(
    runtime: Runtime, db: Database, shop: Shop, status: str
) -> None:
    buyer, variant = await started(db)
    saga.CRASH_POINTS.add("after_start")
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    saga.CRASH_POINTS.clear()
    await set_saga_row(db, status=status, step="price")

    assert await saga.recover_stuck_sagas(runtime, older_than=0) == 1
    totals = await check_invariants(db)
    assert totals.sagas == {"failed": 1} and totals.active_reservations == 0
    assert await stock(db, variant) == (5, 0)
    assert await promo_used(db) == 0
    assert await cart_lines(db, buyer.id) == [(variant, 2)]


async def test_a_completed_row_whose_cart_was_not_cleared_yet_is_cleared(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    saga.CRASH_POINTS.add("after_order")
    with pytest.raises(saga.SimulatedCrash):
        await saga.checkout(runtime, buyer.user, "k", REQUEST)
    saga.CRASH_POINTS.clear()
    # As the earlier version left it: order placed, cart clearing still to do.
    await fill_cart(db, buyer.id, (variant, 2))
    await set_saga_row(db, step="clear_cart")

    assert await saga.recover_stuck_sagas(runtime, older_than=0) == 1
    assert await cart_lines(db, buyer.id) == []
    assert (await check_invariants(db)).sagas == {"completed": 1}
    assert await saga.recover_stuck_sagas(runtime, older_than=0) == 0
