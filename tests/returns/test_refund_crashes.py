"""The return-and-refund workflow crashed at every step boundary, on both backends: recovery
always finishes it; the goods come back on the shelf once and the money once, under
``return:<id>``, and the order, the payment and the processor agree."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mercato import workflows
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.fulfilment import service as fulfilment
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.returns import service as returns
from mercato.runtime import Runtime
from tests.orders.conftest import (
    RealOrder,
    get,
    intent_ops,
    ledger_clean,
    on_hand,
    provider,
    real_order,
    recover_later,
    warehouse,
)
from tests.support.crashes import SimulatedCrash, at_boundary, boundaries, crash_at

__all__ = ["provider", "warehouse"]  # the orders tests' fixtures, used here

pytestmark = pytest.mark.usefixtures("warehouse")

WF = returns.RETURN_AND_REFUND
STAFF = "staff:usr_staff"
REFUND = 1000 + 1250  # one unit of each line (10.00 and 12.50)

# Where the process died → how many runs recovery then had to finish.
EXPECTED = {
    "after:receive": 1,  # the goods are in: refunded and recorded by recovery
    "after:refund": 1,  # refunded, not recorded: the same refund asked again by key
    "after:record": 0,
}


def test_every_boundary_is_covered() -> None:
    assert set(EXPECTED) == set(boundaries(WF))


async def approved_return(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> tuple[RealOrder, str]:
    """A delivered order (2 + 1 units) with an approved return of one unit of each line."""
    placed = await real_order(db, provider)
    shipment = await fulfilment.create_shipment(
        runtime, placed.order.id, fulfilment.ShipmentRequest(carrier="sandbox"), actor=STAFF
    )
    async with db.transaction() as uow:
        await fulfilment.deliver_shipment(uow, shipment.id, actor=STAFF)
    async with db.transaction() as uow:
        made = await returns.request_return(
            uow,
            placed.order.id,
            user_id=placed.order.user_id,
            lines=[(line.id, 1) for line in placed.order.lines],
            reason="Does not fit",
            window_days=30,
        )
        await returns.approve_return(uow, made.id, actor=STAFF)
    return placed, made.id


async def _count(db: Database, order_id: str, kind: str) -> int:
    async with db.transaction() as uow:
        found = await uow.scalar(
            select(func.count()).where(
                OutboxEvent.aggregate_id == order_id, OutboxEvent.type == kind
            )
        )
    return int(found or 0)


async def check_refunded_once(db: Database, placed: RealOrder, return_id: str) -> None:
    order = await get(db, placed.order.id)
    async with db.transaction() as uow:
        found = await returns.get_return(uow, return_id)
        intent = await payments.get_intent(uow, placed.intent_id)
        charges = await payments.sandbox_charge_summary(uow)
        runs = await workflows.count_by_status(uow, WF.name)
    assert found is not None and intent is not None
    assert (found.status, found.refund_amount) == ("refunded", REFUND)
    assert (order.status, order.refunded_total) == ("refunded", REFUND)
    assert [line.quantity_returned for line in order.lines] == [1, 1]
    assert intent.amount_refunded == charges.amount_refunded == REFUND
    assert intent.amount_captured == charges.amount_captured == order.total
    refunds = [op for op in await intent_ops(db, placed.intent_id) if op[0] == "refund"]
    assert refunds == [("refund", f"return:{return_id}", "succeeded")]
    assert [await on_hand(db, v) for v in placed.variants] == [(9, 0), (10, 0)]
    await ledger_clean(db)
    assert runs == {"completed": 1}
    assert await _count(db, order.id, returns.RETURN_RECEIVED) == 1
    assert await _count(db, order.id, returns.REFUND_ISSUED) == 1


@pytest.mark.parametrize("boundary", boundaries(WF))
async def test_a_crash_at_any_boundary_is_finished_by_recovery(
    db: Database, provider: SandboxProvider, runtime: Runtime, boundary: str
) -> None:
    placed, return_id = await approved_return(db, provider, runtime)
    receipt = [returns.Disposition(line.id, "restock") for line in placed.order.lines]
    with crash_at(db, WF, boundary) as reached, pytest.raises(SimulatedCrash):
        await returns.receive_return(runtime, return_id, receipt, actor=STAFF)
    assert reached == [boundary]

    assert await recover_later(runtime) == EXPECTED[boundary]
    assert await recover_later(runtime) == 0
    await check_refunded_once(db, placed, return_id)
    # Receiving again answers from the run; nothing more comes back or goes out.
    again = await returns.receive_return(runtime, return_id, receipt, actor=STAFF)
    assert again.status == "refunded"
    await check_refunded_once(db, placed, return_id)


async def test_a_runner_overtaken_by_recovery_refunds_once(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed, return_id = await approved_return(db, provider, runtime)
    receipt = [returns.Disposition(line.id, "restock") for line in placed.order.lines]

    async def recovery_takes_over() -> None:
        assert await recover_later(runtime) == 1

    with at_boundary(db, WF, "after:receive", recovery_takes_over):
        found = await returns.receive_return(runtime, return_id, receipt, actor=STAFF)
    assert found.status == "refunded"
    await check_refunded_once(db, placed, return_id)
