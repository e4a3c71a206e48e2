"""Every workflow the modules declare, crashed at every one of its boundaries, on both backends.

A scenario per workflow builds what the flow needs through the real flows before it (a real
checkout places the order that is then cancelled, shipped or returned), starts the flow, and
the process "dies" at the boundary. For a boundary inside the undoing (``after_undo:…``) the
workflow's last step is made to refuse first, so that everything before it is undone. Then
recovery runs until nothing is left, and the whole shop must tell one story:

* every run ended, completed or fully compensated;
* the stock ledger balances (received = sold + reserved + available + adjustments);
* the money the processor holds is what the orders say: captured less refunded equals what
  the shipments captured less what the orders refunded (nothing for a cancelled order), and
  every authorization it still holds belongs to an order;
* one order per checkout, and each order's history is one line of transitions.

A workflow a module declares without a scenario here fails
``test_every_workflow_has_a_scenario``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from mercato import workflows
from mercato.checkout import service as checkout
from mercato.db import utcnow
from mercato.flashsale import service as flashsale
from mercato.fulfilment import service as fulfilment
from mercato.inventory import service as inventory
from mercato.modules import workflows_declared
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem
from mercato.returns import service as returns
from mercato.runtime import Runtime
from mercato.workflows import RUNS, Step, StepContext, Workflow
from tests.checkout.conftest import (
    ADDRESS,
    Customer,
    fill_cart,
    make_customer,
    make_shop,
    make_variant,
)
from tests.flashsale.conftest import make_keeper, new_sale
from tests.support.crashes import SimulatedCrash, boundaries, crash_at

ALL = workflows_declared()
LATER = timedelta(hours=1)
STAFF = "staff:test"


@dataclass
class World:
    runtime: Runtime
    customer: Customer
    variant: str


async def a_shop(runtime: Runtime) -> World:
    await make_shop(runtime.db)
    variant = await make_variant(runtime.db, price=3000, stock=5)
    customer = await make_customer(runtime.db)
    await fill_cart(runtime.db, customer.id, (variant, 2))
    return World(runtime, customer, variant)


async def check_out(world: World, key: str = "key-1") -> dict[str, Any]:
    request = checkout.CheckoutRequest(
        shipping_address=ADDRESS, shipping_method="standard", payment_token="tok_visa"
    )
    return await checkout.checkout(world.runtime, world.customer.user, key, request)


async def placed(world: World) -> str:
    order_id = str((await check_out(world, "placed"))["order_id"])
    async with world.runtime.db.transaction() as uow:
        await fulfilment.allocate_order(uow, order_id)
    return order_id


async def shipped(world: World, order_id: str) -> str:
    shipment = await fulfilment.create_shipment(
        world.runtime, order_id, fulfilment.ShipmentRequest(carrier="sandbox"), actor=STAFF
    )
    return shipment.id


async def returned(world: World) -> str:
    """A delivered order with an approved return of one unit: the goods are on their way."""
    order_id = await placed(world)
    shipment_id = await shipped(world, order_id)
    async with world.runtime.db.transaction() as uow:
        await fulfilment.deliver_shipment(uow, shipment_id, actor=STAFF)
        order = await orders.get_order(uow, order_id)
        assert order is not None
        asked = await returns.request_return(
            uow,
            order_id,
            user_id=world.customer.id,
            lines=[(order.lines[0].id, 1)],
            reason="Too small",
            window_days=30,
        )
        await returns.approve_return(uow, asked.id, actor=STAFF)
    return asked.id


# A scenario: build the world up to the flow, and give back how to start it.
Scenario = Callable[[World], Awaitable[Callable[[], Awaitable[Any]]]]


async def checkout_scenario(world: World) -> Callable[[], Awaitable[Any]]:
    return lambda: check_out(world)


async def cancellation_scenario(world: World) -> Callable[[], Awaitable[Any]]:
    order_id = await placed(world)
    return lambda: orders.cancel_order(world.runtime, order_id, actor=STAFF)


async def shipping_scenario(world: World) -> Callable[[], Awaitable[Any]]:
    order_id = await placed(world)
    return lambda: shipped(world, order_id)


async def refund_scenario(world: World) -> Callable[[], Awaitable[Any]]:
    return_id = await returned(world)

    async def receive() -> Any:
        async with world.runtime.db.transaction() as uow:
            found = await returns.get_return(uow, return_id)
        assert found is not None
        dispositions = [returns.Disposition(line.order_line_id, "restock") for line in found.lines]
        return await returns.receive_return(world.runtime, return_id, dispositions, actor=STAFF)

    return receive


async def flash_purchase_scenario(world: World) -> Callable[[], Awaitable[Any]]:
    """An admitted buyer's purchase, queued, then placed by the worker's batch."""
    runtime = world.runtime
    keeper = make_keeper(runtime)
    runtime.extras["flashsale.keeper"] = keeper
    now = utcnow()
    sale = await new_sale(
        runtime.db,
        world.variant,
        1,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        now=now - timedelta(minutes=2),
    )
    user = world.customer.user
    place = await flashsale.join(runtime.db, keeper, sale.id, user.id, ip="10.0.0.1")
    assert place.admission_token is not None
    wanted = checkout.PurchaseRequest(
        admission_token=place.admission_token, shipping_address=ADDRESS, payment_token="tok_visa"
    )

    async def buy() -> Any:
        await checkout.enqueue_purchase(runtime, user, sale.id, "key-1", wanted)
        await checkout.drain_purchases(runtime)

    return buy


SCENARIOS: dict[str, Scenario] = {
    "flashsale.purchase": flash_purchase_scenario,
    "checkout": checkout_scenario,
    "orders.cancellation": cancellation_scenario,
    "fulfilment.ship_and_capture": shipping_scenario,
    "returns.return_and_refund": refund_scenario,
}

CASES = [(name, boundary) for name, wf in sorted(ALL.items()) for boundary in boundaries(wf)]


def test_every_workflow_has_a_scenario() -> None:
    assert set(ALL) == set(SCENARIOS)


@contextlib.contextmanager
def last_step_refuses(workflow: Workflow[Any]) -> Iterator[None]:
    """The workflow's last step refuses before doing anything, so every step before it is
    undone (how a crash inside the undoing is reached)."""
    last = workflow.steps[-1]

    async def refuse(ctx: StepContext, state: Any) -> None:
        raise Problem(409, "injected_refusal", "The last step refuses (test)")

    original = workflow.steps
    steps: tuple[Step[Any], ...] = (*original[:-1], replace(last, run=refuse))
    object.__setattr__(workflow, "steps", steps)
    try:
        yield
    finally:
        object.__setattr__(workflow, "steps", original)


async def recover_until_done(runtime: Runtime) -> None:
    for _ in range(5):
        if await workflows.recover(runtime, now=utcnow() + LATER) == 0:
            return
    raise AssertionError("recovery kept finding work")


async def check_the_shop(runtime: Runtime) -> None:
    async with runtime.db.transaction() as uow:
        # Every run ended.
        statuses = {s for (s,) in (await uow.execute(select(RUNS.c.status))).all()}
        assert statuses <= {"completed", "failed"}, statuses
        # The stock ledger balances.
        assert await inventory.check_ledger(uow) == []
        # One order per checkout, each with a history that is one line.
        completed = {
            run_id
            for (run_id,) in (
                await uow.execute(
                    select(RUNS.c.id).where(
                        RUNS.c.workflow.in_(("checkout", "flashsale.purchase")),
                        RUNS.c.status == "completed",
                    )
                )
            ).all()
        }
        placed_orders = [
            await orders.get_order(uow, o.id)
            for o in (
                await orders.search_orders(
                    uow, orders.OrderFilters(), secret_key=runtime.settings.secret_key, limit=100
                )
            ).items
        ]
        by_checkout = [o.checkout_id for o in placed_orders if o is not None]
        assert sorted(by_checkout) == sorted(completed)
        kept_by_orders = 0
        live_authorizations = 0
        for order in placed_orders:
            assert order is not None
            statuses_seen = [h.to_status for h in order.history]
            assert [h.from_status for h in order.history[1:]] == statuses_seen[:-1]
            intent = await payments.get_intent(uow, order.payment_intent_id)
            assert intent is not None
            if intent.status != "voided":
                live_authorizations += 1
            if order.status == "cancelled":
                # Cancelled: nothing held any more, whatever was captured given back.
                assert intent.status == "voided" or intent.net_paid == 0
            else:
                captured = await fulfilment.captured_for_order(uow, order.id)
                kept_by_orders += captured - order.refunded_total
        processor = await payments.sandbox_charge_summary(uow)
    # What the processor holds for the shop is what the orders say the shop keeps: the
    # shipments' captures less the refunds, nothing for a cancelled order.
    assert processor.amount_captured - processor.amount_refunded == kept_by_orders
    assert processor.charges == live_authorizations


@pytest.mark.parametrize(("name", "boundary"), CASES)
async def test_a_crash_at_any_boundary_of_any_workflow_leaves_one_story(
    runtime: Runtime, name: str, boundary: str
) -> None:
    workflow = ALL[name]
    world = await a_shop(runtime)
    begin = await SCENARIOS[name](world)
    refusing = last_step_refuses(workflow) if boundary.startswith("after_undo") else None
    with contextlib.ExitStack() as stack:
        if refusing is not None:
            stack.enter_context(refusing)
        reached = stack.enter_context(crash_at(runtime.db, workflow, boundary))
        with contextlib.suppress(SimulatedCrash, Problem):
            await begin()
    assert reached == [boundary], f"{boundary} was never reached"
    await recover_until_done(runtime)
    await check_the_shop(runtime)
