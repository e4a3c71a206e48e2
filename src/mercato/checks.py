"""The money check: what the payment processor holds is what the orders say.

For every order, the payment's captures equal what its shipments captured and its refunds what
the order records as refunded; a cancelled order holds no money (its authorization voided, or
whatever was captured refunded). Every payment that belongs to no order and is older than the
grace period (a checkout that cannot finish any more) must have been voided or have failed. On
the sandbox processor, the processor's own totals must equal the payments'. ``mercato payments
check`` prints the differences and exits with code 1 when there are any.

It reads three modules (orders, fulfilment, payments) through their services, so it lives
beside the entry points rather than in any one of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from mercato.db import UnitOfWork, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.orders import service as orders
from mercato.payments import service as payments

PAGE = 100  # the most a page of the orders search gives
SETTLED = frozenset({"voided", "failed"})
"""Payment statuses that hold no money for anyone."""


@dataclass(frozen=True, slots=True)
class MoneyDifference:
    reference: str
    """The order or payment concerned."""
    what: str
    expected: int
    found: int


async def _order_ids(uow: UnitOfWork, secret_key: str) -> list[str]:
    ids: list[str] = []
    cursor: str | None = None
    while True:
        page = await orders.search_orders(
            uow, orders.OrderFilters(), secret_key=secret_key, cursor=cursor, limit=PAGE
        )
        ids += [o.id for o in page.items]
        if page.next_cursor is None:
            return ids
        cursor = page.next_cursor


async def _check_order(uow: UnitOfWork, order_id: str) -> tuple[str | None, list[MoneyDifference]]:
    order = await orders.get_order(uow, order_id)
    if order is None:
        return None, []
    intent = await payments.get_intent(uow, order.payment_intent_id)
    if intent is None:
        return None, [MoneyDifference(order.id, "payment missing", order.total, 0)]
    found: list[MoneyDifference] = []
    if order.status == "cancelled":
        if intent.status != "voided" and intent.net_paid != 0:
            found.append(MoneyDifference(order.id, "cancelled but paid", 0, intent.net_paid))
        return intent.id, found
    captured = await fulfilment.captured_for_order(uow, order.id)
    if intent.amount_captured != captured:
        found.append(
            MoneyDifference(order.id, "captured (shipments)", captured, intent.amount_captured)
        )
    if intent.amount_refunded != order.refunded_total:
        found.append(
            MoneyDifference(order.id, "refunded", order.refunded_total, intent.amount_refunded)
        )
    if intent.status in SETTLED:
        found.append(MoneyDifference(order.id, f"payment {intent.status}", order.total, 0))
    return intent.id, found


async def check_money(
    uow: UnitOfWork,
    *,
    secret_key: str,
    grace: timedelta,
    sandbox: bool,
    now: datetime | None = None,
) -> list[MoneyDifference]:
    """Every difference between the payments and the orders (empty: the money adds up)."""
    now = now or utcnow()
    differences: list[MoneyDifference] = []
    of_orders: set[str] = set()
    for order_id in await _order_ids(uow, secret_key):
        intent_id, found = await _check_order(uow, order_id)
        differences += found
        if intent_id is not None:
            of_orders.add(intent_id)
    net = 0
    after: str | None = None
    while intents := await payments.list_intents(uow, after=after, limit=PAGE):
        after = intents[-1].id
        for intent in intents:
            net += intent.net_paid
            if intent.id in of_orders or intent.status in SETTLED:
                continue
            if intent.created_at <= now - grace:
                held = intent.amount_authorized if intent.net_paid == 0 else intent.net_paid
                differences.append(
                    MoneyDifference(intent.id, f"{intent.status} without an order", 0, held)
                )
    if sandbox:
        processor = await payments.sandbox_charge_summary(uow)
        held = processor.amount_captured - processor.amount_refunded
        if held != net:
            differences.append(MoneyDifference("processor", "captured - refunded", net, held))
    return differences
