"""Giving an order's money back: the external step of a cancellation and of a return's refund.

Both run outside any transaction (they call the payment processor) and are idempotent by the
caller's key (``cancel:<order id>``, ``return:<return id>``): the processor never acts twice on
one key, and a retry re-sends exactly the refund that was started under it. Neither records
anything on the order: the workflow that called it does, in its next transactional step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mercato.db import Database, UnitOfWork
from mercato.orders.queries import order_row
from mercato.payments import service as payments
from mercato.payments.service import PaymentProvider
from mercato.problems import Problem, not_found, validation_problem

log = logging.getLogger("mercato.orders")


def cancel_key(order_id: str) -> str:
    """The idempotency key of a cancellation's void or refund: one per order, ever."""
    return f"cancel:{order_id}"


async def refund_made_for(uow: UnitOfWork, intent_id: str, key: str) -> int | None:
    """The amount of the refund started under ``key``, if any (a retry must send the very
    same request)."""
    for event in await payments.intent_events(uow, intent_id):
        if event.operation == "refund" and event.idempotency_key == key:
            return event.amount
    return None


@dataclass(frozen=True, slots=True)
class MoneyBack:
    done: bool
    """False while the processor's answer is unknown: call again with the same key."""
    refunded: int
    """What was refunded under this key (0 for a void)."""


async def give_money_back(
    db: Database, provider: PaymentProvider, intent_id: str, key: str
) -> MoneyBack:
    """Release a payment: void the authorization when nothing was captured, else refund what
    was captured (net of earlier refunds), under ``key``."""
    for _ in range(2):
        async with db.transaction() as uow:
            intent = await payments.get_intent(uow, intent_id) if intent_id else None
            started = await refund_made_for(uow, intent_id, key) if intent else None
        if intent is None:
            log.warning("payment intent %r is unknown: nothing to give back", intent_id)
            return MoneyBack(True, 0)
        if started is None and intent.amount_captured == 0:
            try:
                outcome = await payments.void(db, provider, intent_id, key)
            except Problem as exc:
                if exc.code == "payment_already_captured":
                    continue  # captured meanwhile: refund it instead
                raise
            return MoneyBack(outcome.ok, 0)
        amount = started if started is not None else intent.net_paid
        if amount <= 0:
            return MoneyBack(True, 0)
        outcome = await payments.refund(db, provider, intent_id, amount, key)
        return MoneyBack(outcome.ok, amount if outcome.ok else 0)
    return MoneyBack(False, 0)


async def refund_payment(
    db: Database, provider: PaymentProvider, order_id: str, amount: int, key: str
) -> bool:
    """Give ``amount`` of an order's captured payment back, once per ``key``. True when done;
    False while the processor's answer is unknown (call again with the same key: it is never
    refunded twice). The caller records it on the order (:func:`~mercato.orders.lifecycle.
    record_refund`) once it is done.

    Refused before the processor is called: 409 ``refund_exceeds_total``, 422
    ``refund_exceeds_captured``; a refusal by the processor is a 402 ``refund_failed``.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise validation_problem("amount", "must be a positive amount in minor units")
    async with db.transaction() as uow:
        row = await order_row(uow, order_id)
        if row is None:
            raise not_found("Order", order_id)
        started = (
            await refund_made_for(uow, row.payment_intent_id, key)
            if row.payment_intent_id
            else None
        )
    if not row.payment_intent_id:
        raise Problem(409, "refund_exceeds_captured", "Nothing was paid for this order")
    if started is not None and started != amount:
        raise Problem(
            409, "idempotency_conflict", "This refund was started with a different amount"
        )
    if started is None and row.refunded_total + amount > row.total:
        raise Problem(409, "refund_exceeds_total", "Refunds would exceed the order's total")
    outcome = await payments.refund(db, provider, row.payment_intent_id, amount, key)
    if outcome.pending:
        log.warning("order %s: refund %s not settled yet; it will be retried", order_id, key)
        return False
    if not outcome.ok:
        raise Problem(
            402,
            "refund_failed",
            "The payment provider refused the refund",
            payment_code=outcome.code,
        )
    return True
