"""The ship-and-capture workflow crashed at every step boundary, on both backends: recovery
finishes a shipment whose capture went through, and undoes one whose capture was refused;
either way no unit ships twice, the payment is captured at most once and says what shipped."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mercato import workflows
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.fulfilment import service as fulfilment
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.problems import Problem
from mercato.runtime import Runtime
from tests.orders.conftest import (
    get,
    ledger_clean,
    provider,
    real_order,
    recover_later,
    warehouse,
)
from tests.support.crashes import SimulatedCrash, at_boundary, boundaries, crash_at

__all__ = ["provider", "warehouse"]  # the orders tests' fixtures, used here

pytestmark = pytest.mark.usefixtures("warehouse")

WF = fulfilment.SHIP_AND_CAPTURE

# Where the process died → (the run's end, the shipment's end, runs recovery had to finish).
EXPECTED = {
    "after:claim": ("completed", "in_transit", 1),  # claimed: captured and shipped by recovery
    "after:capture": ("completed", "in_transit", 1),  # captured, not recorded: asked again
    "after:complete": ("completed", "in_transit", 0),
    "after_undo:claim": ("failed", None, 0),  # refused, claim given back: nothing left to do
    # Captured, then the order was cancelled: the capture's refund was looked at (the
    # cancellation had given it back already); recovery gives the claim back.
    "after_undo:capture": ("failed", None, 1),
}


def test_every_boundary_is_covered() -> None:
    assert set(EXPECTED) == set(boundaries(WF))


async def _count(db: Database, order_id: str, kind: str) -> int:
    async with db.transaction() as uow:
        found = await uow.scalar(
            select(func.count()).where(
                OutboxEvent.aggregate_id == order_id, OutboxEvent.type == kind
            )
        )
    return int(found or 0)


async def check_shipped_once_or_not_at_all(
    db: Database, order_id: str, intent_id: str, shipment_id: str, shipped: bool
) -> None:
    order = await get(db, order_id)
    async with db.transaction() as uow:
        shipments = await fulfilment.shipments_for_order(uow, order_id, include_pending=True)
        items = [i for f in await fulfilment.fulfilments_for_order(uow, order_id) for i in f.items]
        captured = await fulfilment.captured_for_order(uow, order_id)
        intent = await payments.get_intent(uow, intent_id)
        charges = await payments.sandbox_charge_summary(uow)
    assert intent is not None
    # What the processor took, what the intent says and what the shipments say agree.
    assert charges.amount_captured == intent.amount_captured == captured
    assert all(i.quantity_claimed == i.quantity_shipped for i in items)  # no claim left over
    if shipped:
        assert order.status == "shipped" and order.units_shipped == 3
        assert [(s.id, s.status) for s in shipments] == [(shipment_id, "in_transit")]
        assert captured == order.total
        assert await _count(db, order_id, fulfilment.SHIPMENT_CREATED) == 1
    else:
        assert order.status == "paid" and order.units_shipped == 0
        assert shipments == [] and captured == 0
        assert await _count(db, order_id, fulfilment.SHIPMENT_CREATED) == 0
    assert [h.to_status for h in order.history][-1] == order.status
    await ledger_clean(db)


@pytest.mark.parametrize("boundary", [b for b in boundaries(WF) if b != "after_undo:capture"])
async def test_a_crash_at_any_boundary_is_finished_or_undone_by_recovery(
    db: Database, provider: SandboxProvider, runtime: Runtime, boundary: str
) -> None:
    placed = await real_order(db, provider)
    if boundary.startswith("after_undo"):
        # The authorization was voided behind the shop's back: the capture will be refused.
        await payments.void(db, provider, placed.intent_id, "test-void")
    shipment_id = "shp_crash000000000000000000001"
    request = fulfilment.ShipmentRequest(carrier="sandbox", shipment_id=shipment_id)
    with crash_at(db, WF, boundary) as reached, pytest.raises(SimulatedCrash):
        await fulfilment.create_shipment(runtime, placed.order.id, request, actor="staff:usr_1")
    assert reached == [boundary]

    run_status, _, handled = EXPECTED[boundary]
    assert await recover_later(runtime) == handled
    assert await recover_later(runtime) == 0
    async with db.transaction() as uow:
        assert await workflows.count_by_status(uow, WF.name) == {run_status: 1}
    await check_shipped_once_or_not_at_all(
        db, placed.order.id, placed.intent_id, shipment_id, shipped=run_status == "completed"
    )
    # The same request again answers from the run: the shipment, or the refusal.
    if run_status == "completed":
        again = await fulfilment.create_shipment(
            runtime, placed.order.id, request, actor="staff:usr_1"
        )
        assert again.id == shipment_id and again.status == "in_transit"
    else:
        with pytest.raises(Problem) as refused:
            await fulfilment.create_shipment(runtime, placed.order.id, request, actor="staff:usr_1")
        assert refused.value.code == "capture_failed"


async def test_a_runner_overtaken_by_recovery_ships_and_captures_once(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider)
    request = fulfilment.ShipmentRequest(carrier="sandbox")

    async def recovery_takes_over() -> None:
        assert await recover_later(runtime) == 1

    with at_boundary(db, WF, "after:claim", recovery_takes_over):
        shipment = await fulfilment.create_shipment(
            runtime, placed.order.id, request, actor="staff:usr_1"
        )
    assert shipment.status == "in_transit"
    await check_shipped_once_or_not_at_all(
        db, placed.order.id, placed.intent_id, shipment.id, shipped=True
    )


async def test_a_shipment_whose_order_is_cancelled_after_its_capture_gives_the_money_back_once(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    """The capture went through, then the order was cancelled before the parcel left: the
    shipment is undone (crashed right after its capture was looked at, finished by recovery),
    the cancellation refunds what was captured, and nothing is refunded twice."""
    placed = await real_order(db, provider)
    shipment_id = "shp_crash000000000000000000002"
    request = fulfilment.ShipmentRequest(carrier="sandbox", shipment_id=shipment_id)

    async def cancel_meanwhile() -> None:
        await orders.cancel_order(runtime, placed.order.id, actor="staff:usr_2")

    with (
        at_boundary(db, WF, "after:capture", cancel_meanwhile),
        crash_at(db, WF, "after_undo:capture") as reached,
        pytest.raises(SimulatedCrash),
    ):
        await fulfilment.create_shipment(runtime, placed.order.id, request, actor="staff:usr_1")
    assert reached == ["after_undo:capture"]
    _, _, handled = EXPECTED["after_undo:capture"]
    assert await recover_later(runtime) == handled
    assert await recover_later(runtime) == 0
    order = await get(db, placed.order.id)
    async with db.transaction() as uow:
        runs = await workflows.count_by_status(uow, WF.name)
        shipments = await fulfilment.shipments_for_order(uow, order.id, include_pending=True)
        intent = await payments.get_intent(uow, placed.intent_id)
        charges = await payments.sandbox_charge_summary(uow)
    assert runs == {"failed": 1}
    assert order.status == "cancelled" and shipments == []
    assert intent is not None and intent.amount_captured == intent.amount_refunded == order.total
    assert (charges.amount_captured, charges.amount_refunded) == (order.total, order.total)
    assert order.refunded_total == order.total
    await ledger_clean(db)
