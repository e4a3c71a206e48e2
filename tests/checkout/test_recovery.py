"""Crash safety: the process dies at every boundary of the checkout workflow, recovery finishes
or undoes the checkout.

Afterwards every checkout is either a paid order with its stock sold and its promo use final,
or fully compensated (stock back, promo use back, any authorization voided), and the sandbox
processor holds no charge without an order.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update

from mercato import worker, workflows
from mercato.checkout import service, workflow
from mercato.checkout.workflow import CHECKOUT
from mercato.db import Database, utcnow
from mercato.inventory import service as inventory
from mercato.payments import service as payments
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.workflows import RUNS
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
from tests.support.crashes import SimulatedCrash, at_boundary, boundaries, crash_at

REQUEST = service.CheckoutRequest(
    shipping_address=ADDRESS,
    shipping_method="standard",
    payment_token="tok_visa",
    promo_code="WELCOME10",
)
DECLINED = replace(REQUEST, payment_token="tok_chargeDeclined")
LATER = timedelta(hours=1)

# Where the process died → what recovery makes of the checkout, whether it had anything left
# to do, and what a replay of the key answers when the checkout was undone.
EXPECTED = {
    # Stock and promo use held, nothing charged: all given back.
    "after:reserve": ("failed", 1, "checkout_interrupted"),
    # The payment went through: the order is placed.
    "after:authorize": ("completed", 1, None),
    "after:place_order": ("completed", 0, None),
    # Being undone (the reservation expired and the stock was sold meanwhile): the void is done
    # again (it is idempotent), then the stock and the promo use go back.
    "after_undo:authorize": ("failed", 1, "out_of_stock"),
    # Undone (a declined card) and recorded in the same transaction: nothing left to do.
    "after_undo:reserve": ("failed", 0, "payment_declined"),
}


async def promo_used(db: Database) -> int:
    async with db.transaction() as uow:
        promo = await service.get_promo_by_code(uow, "WELCOME10")
    assert promo is not None
    return promo.used_count


async def started(db: Database) -> tuple[Customer, str]:
    variant = await make_variant(db, price=3000, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 2))
    return buyer, variant


async def recover_later(runtime: Runtime, later: timedelta = LATER) -> int:
    return await workflows.recover(runtime, now=utcnow() + later)


async def expire_all_reservations(db: Database) -> None:
    async with db.transaction() as uow:
        await inventory.expire_due(uow, utcnow() + timedelta(days=1))


async def sell_out(db: Database, variant: str) -> None:
    """Someone else buys every unit left."""
    async with db.transaction() as uow:
        await inventory.reserve(uow, "other-checkout", [(variant, 5)])
        await inventory.commit(uow, "other-checkout")


async def crash_into(runtime: Runtime, buyer: Customer, variant: str, boundary: str) -> None:
    """Drive a checkout to ``boundary`` and let the process die there."""
    db = runtime.db
    if boundary == "after_undo:authorize":
        # The order step refuses only when the stock went away after the payment: die after
        # the payment, lose the stock, and let recovery die while undoing.
        with crash_at(db, CHECKOUT, "after:authorize"), pytest.raises(SimulatedCrash):
            await service.checkout(runtime, buyer.user, "crash-key", REQUEST)
        await expire_all_reservations(db)
        await sell_out(db, variant)
        with crash_at(db, CHECKOUT, boundary) as reached:
            assert await recover_later(runtime) == 0  # died half-way: not done
        assert reached == [boundary]
        return
    request = DECLINED if boundary == "after_undo:reserve" else REQUEST
    with crash_at(db, CHECKOUT, boundary) as reached, pytest.raises(SimulatedCrash):
        await service.checkout(runtime, buyer.user, "crash-key", request)
    assert reached == [boundary]


def test_every_boundary_is_covered() -> None:
    assert set(EXPECTED) == set(boundaries(CHECKOUT))


@pytest.mark.parametrize("boundary", boundaries(CHECKOUT))
async def test_crash_at_each_boundary_then_recovery(
    runtime: Runtime, db: Database, shop: Shop, boundary: str
) -> None:
    buyer, variant = await started(db)
    await crash_into(runtime, buyer, variant, boundary)

    expected, left, code = EXPECTED[boundary]
    # A run that was being undone was taken over once already: its lease runs from then.
    later = 2 * LATER if boundary.startswith("after_undo") else LATER
    assert await recover_later(runtime, later) == left
    totals = await check_invariants(db)
    assert totals.checkouts == {expected: 1}
    assert totals.active_reservations == 0
    if expected == "completed":
        assert totals.orders == 1 and totals.live_charges == 1
        assert await stock(db, variant) == (3, 0)
        assert await promo_used(db) == 1
        assert await cart_lines(db, buyer.id) == []
        replay = await service.checkout(runtime, buyer.user, "crash-key", REQUEST)
        assert replay["status"] == "paid" and replay["discount"] == "6.00"
    else:
        assert totals.orders == 0 and totals.live_charges == 0
        sold_meanwhile = boundary == "after_undo:authorize"
        assert await stock(db, variant) == ((0, 0) if sold_meanwhile else (5, 0))
        assert await promo_used(db) == 0
        assert await cart_lines(db, buyer.id) == [(variant, 2)]
        request = DECLINED if boundary == "after_undo:reserve" else REQUEST
        with pytest.raises(Problem) as caught:
            await service.checkout(runtime, buyer.user, "crash-key", request)
        assert caught.value.code == code
    # Nothing is left for a second run.
    assert await recover_later(runtime, 3 * LATER) == 0


async def test_recent_checkouts_are_left_to_their_request(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, _ = await started(db)
    with crash_at(db, CHECKOUT, "after:reserve"), pytest.raises(SimulatedCrash):
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    assert await workflows.recover(runtime) == 0  # its lease has not passed yet
    assert (await check_invariants(db)).checkouts == {"running": 1}


async def test_a_lost_processor_answer_is_resolved_by_recovery(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    provider = provider_of(runtime)
    # Every send reaches the processor but its answer is lost, and so is every lookup.
    provider.inject_fault("authorize", "timeout_after", times=payments.SEND_ATTEMPTS)
    provider.inject_fault("lookup", "timeout_before", times=2 * payments.SEND_ATTEMPTS)
    with pytest.raises(Problem) as caught:
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    assert caught.value.code == "payment_timeout"
    provider.clear_faults()

    assert await recover_later(runtime) == 1
    totals = await check_invariants(db)
    assert totals.checkouts == {"completed": 1}
    assert totals.orders == 1 and totals.live_charges == 1
    assert await stock(db, variant) == (3, 0)


async def test_recovery_racing_the_request_voids_the_late_authorization(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)

    async def recover_now() -> None:
        # The request's run looks abandoned: recovery undoes it while the request goes on to
        # the payment processor.
        assert await recover_later(runtime) == 1

    with (
        at_boundary(db, CHECKOUT, "after:reserve", recover_now),
        pytest.raises(Problem) as caught,
    ):
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    assert caught.value.code == "checkout_interrupted"
    totals = await check_invariants(db)
    assert totals.checkouts == {"failed": 1} and totals.orders == 0 and totals.live_charges == 0
    async with db.transaction() as uow:
        summary = await payments.sandbox_charge_summary(uow)
    assert summary.voided == 1
    assert await stock(db, variant) == (5, 0)


async def expire_lease(db: Database) -> None:
    """The request running the checkout is long gone (its lease has passed)."""
    async with db.transaction() as uow:
        await uow.execute(update(RUNS).values(lease_until=utcnow() - timedelta(seconds=1)))


async def test_a_replay_of_a_stale_checkout_recovers_it(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, _ = await started(db)
    with crash_at(db, CHECKOUT, "after:authorize"), pytest.raises(SimulatedCrash):
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    await expire_lease(db)
    answer = await service.checkout(runtime, buyer.user, "k", REQUEST)
    assert answer["status"] == "paid"
    assert (await check_invariants(db)).orders == 1


async def test_the_worker_runs_recovery(runtime: Runtime) -> None:
    assert "workflows.recover" in {j.name for j in worker.jobs()}
    assert workflows.registered()[CHECKOUT.name] is CHECKOUT


async def test_a_replay_while_the_first_request_runs_is_told_to_retry(
    runtime: Runtime, db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    buyer, _ = await started(db)
    with crash_at(db, CHECKOUT, "after:reserve"), pytest.raises(SimulatedCrash):
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    monkeypatch.setattr(workflow, "CHECKOUT", replace(CHECKOUT, replay_wait_seconds=0.05))
    with pytest.raises(Problem) as caught:
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    assert caught.value.status == 409 and caught.value.code == "checkout_in_progress"
    assert caught.value.headers == {"Retry-After": "1"}


async def test_an_expired_reservation_is_taken_again_when_the_order_is_made(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    with crash_at(db, CHECKOUT, "after:authorize"), pytest.raises(SimulatedCrash):
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    await expire_all_reservations(db)

    assert await recover_later(runtime) == 1
    totals = await check_invariants(db)
    assert totals.checkouts == {"completed": 1} and totals.orders == 1
    assert await stock(db, variant) == (3, 0)


async def test_stock_sold_meanwhile_refunds_the_authorization(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    buyer, variant = await started(db)
    with crash_at(db, CHECKOUT, "after:authorize"), pytest.raises(SimulatedCrash):
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    await expire_all_reservations(db)
    await sell_out(db, variant)

    assert await recover_later(runtime) == 1
    totals = await check_invariants(db)
    assert totals.checkouts == {"failed": 1} and totals.orders == 0 and totals.live_charges == 0
    assert await promo_used(db) == 0
    with pytest.raises(Problem) as caught:
        await service.checkout(runtime, buyer.user, "k", REQUEST)
    assert caught.value.code == "out_of_stock"
