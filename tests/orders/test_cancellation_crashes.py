"""The cancellation workflow crashed at every step boundary, on both backends: recovery always
finishes it, and the stock, the money and the order tell one story afterwards (the goods back
once, the money given back once under ``cancel:<order id>``, one cancelled order)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mercato import workflows
from mercato.db import Database
from mercato.events import OutboxEvent
from mercato.orders import service
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.runtime import Runtime
from tests.orders.conftest import (
    get,
    intent_ops,
    ledger_clean,
    on_hand,
    real_order,
    recover_later,
)
from tests.support.crashes import SimulatedCrash, at_boundary, boundaries, crash_at

pytestmark = pytest.mark.usefixtures("warehouse")

WF = service.CANCELLATION

# Where the process died → how many runs recovery then had to finish.
EXPECTED = {
    "after:cancel": 1,  # cancelled and restocked: the money is given back, then recorded
    "after:give_money_back": 1,  # given back but not recorded: asked again by key, recorded
    "after:record": 0,
}


def test_every_boundary_is_covered() -> None:
    assert set(EXPECTED) == set(boundaries(WF))


async def _events(db: Database, order_id: str, kind: str) -> int:
    async with db.transaction() as uow:
        found = await uow.scalar(
            select(func.count()).where(
                OutboxEvent.aggregate_id == order_id, OutboxEvent.type == kind
            )
        )
    return int(found or 0)


async def check_cancelled_once(
    db: Database, placed_order_id: str, intent_id: str, variants: list[str], captured: bool
) -> None:
    order = await get(db, placed_order_id)
    assert order.status == "cancelled"
    assert [h.to_status for h in order.history] == ["paid", "cancelled"]  # one state, one line
    assert order.stock_returned_at is not None and order.payment_released_at is not None
    assert [await on_hand(db, v) for v in variants] == [(10, 0), (10, 0)]
    await ledger_clean(db)
    given_back = [op for op in await intent_ops(db, intent_id) if op[0] in ("void", "refund")]
    assert given_back == [("refund" if captured else "void", f"cancel:{order.id}", "succeeded")]
    async with db.transaction() as uow:
        intent = await payments.get_intent(uow, intent_id)
        charges = await payments.sandbox_charge_summary(uow)
        runs = await workflows.count_by_status(uow, WF.name)
    assert intent is not None
    if captured:
        assert intent.amount_refunded == intent.amount_captured == order.total
        assert order.refunded_total == order.total
        assert (charges.amount_captured, charges.amount_refunded) == (order.total, order.total)
    else:
        assert intent.status == "voided" and order.refunded_total == 0
        assert (charges.charges, charges.voided) == (0, 1)
    assert runs == {"completed": 1}
    assert await _events(db, order.id, service.ORDER_PAYMENT_RELEASED) == 1
    assert await _events(db, order.id, service.ORDER_STATUS_CHANGED) == 2


@pytest.mark.parametrize("captured", [False, True], ids=["authorized", "captured"])
@pytest.mark.parametrize("boundary", boundaries(WF))
async def test_a_crash_at_any_boundary_is_finished_by_recovery(
    db: Database, provider: SandboxProvider, runtime: Runtime, boundary: str, captured: bool
) -> None:
    placed = await real_order(db, provider, capture=captured)
    with crash_at(db, WF, boundary) as reached, pytest.raises(SimulatedCrash):
        await service.cancel_order(runtime, placed.order.id, actor="staff:usr_staff")
    assert reached == [boundary]

    assert await recover_later(runtime) == EXPECTED[boundary]
    assert await recover_later(runtime) == 0  # nothing left for a second pass
    await check_cancelled_once(db, placed.order.id, placed.intent_id, placed.variants, captured)


async def test_a_runner_overtaken_by_recovery_gives_nothing_back_twice(
    db: Database, provider: SandboxProvider, runtime: Runtime
) -> None:
    placed = await real_order(db, provider, capture=True)

    async def recovery_takes_over() -> None:
        assert await recover_later(runtime) == 1

    with at_boundary(db, WF, "after:cancel", recovery_takes_over):
        order = await service.cancel_order(runtime, placed.order.id, actor="staff:usr_staff")
    assert order.status == "cancelled"
    await check_cancelled_once(db, placed.order.id, placed.intent_id, placed.variants, True)
