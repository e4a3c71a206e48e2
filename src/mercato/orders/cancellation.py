"""Cancelling an order, as a durable workflow (``orders.cancellation``, one run per order).

1. **cancel** (one transaction): the order moves to ``cancelled`` with the conditional
   transition (allowed from paid and fulfilling while nothing has shipped; two concurrent
   cancels: exactly one wins, the other gets the 409 ``invalid_transition``), and the goods go
   back on the shelf: the order's reservations were committed at checkout under the checkout
   id, and each is restocked at its warehouse. No compensation: a cancelled order stays
   cancelled, and what follows only moves forward.
2. **give the money back** (the payment processor, outside any transaction, so a slow
   processor holds no lock): the authorization is voided when nothing was captured, else what
   was captured is refunded, always with the key ``cancel:<order id>``, so a retry can never
   give money back twice. An unknown answer (a timeout), a processor that is down or refuses:
   the run waits (``RetryLater``, backing off) and the worker's ``workflows.recover`` tries
   again with the same key. The live caller is answered at once: cancelled, money to follow.
3. **record** (one transaction): what was refunded is added to the order's
   ``refunded_total``, and ``OrderPaymentReleased`` is published.

The run's row is the cancellation's bookkeeping: its state says when the stock went back and
when the money did (:func:`~mercato.orders.queries.get_order` shows both on a cancelled
order). Every way an order becomes cancelled goes through here: customers and staff (API,
back office, a manual status change) call :func:`cancel_order`; an order moved to
``cancelled`` by a plain transition is taken over from the outbox by :func:`take_over`
(its first step then only restocks).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from mercato import events, workflows
from mercato.db import UnitOfWork, utcnow
from mercato.inventory import service as inventory
from mercato.orders import refunds
from mercato.orders.lifecycle import check_actor, check_reason, record_refund, transition
from mercato.orders.machine import CANCELLABLE, check_status
from mercato.orders.queries import (
    CANCELLATION_WORKFLOW,
    ORDERS,
    OrderInfo,
    get_order,
    order_row,
)
from mercato.payments import service as payments
from mercato.problems import Problem, not_found
from mercato.runtime import Runtime
from mercato.workflows import RetryLater, Step, StepContext, Workflow

log = logging.getLogger("mercato.orders")

ORDER_PAYMENT_RELEASED = "OrderPaymentReleased"
RELEASE_PENDING = "payment_release_pending"
SYSTEM_ACTOR = "system:orders"


class CancellationState(BaseModel):
    order_id: str
    actor: str
    reason: str | None = None
    user_id: str | None = None
    """The customer asking (someone else's order is a 404); None for staff and the system."""
    adopted: bool = False
    """Moved to ``cancelled`` already (a plain transition): only its effects are left to do."""
    payment_intent_id: str = ""
    units_restocked: int = 0
    stock_returned_at: datetime | None = None
    refunded: int = 0
    payment_released_at: datetime | None = None


# -- 1. cancel: the order's state, and the goods back on the shelf ---------------------------------


async def cancel(ctx: StepContext, st: CancellationState) -> None:
    uow = ctx.uow
    row = await order_row(uow, st.order_id)
    if row is None or (st.user_id is not None and row.user_id != st.user_id):
        raise not_found("Order", st.order_id)
    if not st.adopted:
        await transition(
            uow,
            st.order_id,
            "cancelled",
            actor=st.actor,
            reason=st.reason,
            expected_from=CANCELLABLE,
        )
    st.payment_intent_id = row.payment_intent_id
    st.units_restocked = await _restock(uow, st.order_id, row.checkout_id)
    st.stock_returned_at = utcnow()


async def _restock(uow: UnitOfWork, order_id: str, checkout_id: str) -> int:
    held = await inventory.list_reservations(
        uow, state="committed", owner=checkout_id, limit=10_000
    )
    # Stock rows in one order for every caller, so concurrent restocks cannot deadlock.
    for r in sorted(held, key=lambda r: (r.variant_id, r.warehouse_id)):
        await inventory.restock(uow, r.variant_id, r.warehouse_code, r.quantity, reference=order_id)
    units = sum(r.quantity for r in held)
    log.info("order %s: %d units back in stock", order_id, units)
    return units


# -- 2. give the money back: void, or refund what was captured -------------------------------------


async def give_money_back(ctx: StepContext, st: CancellationState) -> None:
    provider = payments.get_provider(ctx.runtime)
    key = refunds.cancel_key(st.order_id)
    delay = workflows.retry_delay(ctx.attempt)
    try:
        back = await refunds.give_money_back(ctx.db, provider, st.payment_intent_id, key)
    except Problem as refused:
        log.warning("order %s: giving the money back was refused: %s", st.order_id, refused.code)
        raise RetryLater(_release_pending(refused.detail), delay=delay) from refused
    if not back.done:
        log.warning("order %s: the payment is not released yet; it will be retried", st.order_id)
        raise RetryLater(_release_pending(), delay=delay)
    st.refunded = back.refunded
    st.payment_released_at = utcnow()


def _release_pending(why: str | None = None) -> Problem:
    detail = "The order is cancelled; the payment is not released yet and will be retried"
    return Problem(503, RELEASE_PENDING, f"{detail} ({why})" if why else detail)


# -- 3. record it on the order ---------------------------------------------------------------------


async def record(ctx: StepContext, st: CancellationState) -> None:
    uow = ctx.uow
    # A runner whose run was taken over (its lease passed) may get here after the new owner
    # recorded it: both write the order row, so lock it and look at the run first. The engine's
    # fence then stops the late runner at its progress write, with nothing done here.
    await uow.execute(select(ORDERS.c.id).where(ORDERS.c.id == st.order_id).with_for_update())
    run = await workflows.get_run(uow, ctx.run_id)
    if run is None or run.status not in workflows.ACTIVE:
        return
    if st.refunded:
        await record_refund(uow, st.order_id, st.refunded)
    row = await order_row(uow, st.order_id)
    assert row is not None
    await events.publish(
        uow,
        ORDER_PAYMENT_RELEASED,
        st.order_id,
        {
            "order_id": st.order_id,
            "user_id": row.user_id,
            "refunded": st.refunded,
            "currency": row.currency,
        },
    )
    log.info("order %s: payment released (refunded %d)", st.order_id, st.refunded)


def _result(st: CancellationState) -> dict[str, Any]:
    return {"order_id": st.order_id, "refunded": st.refunded}


CANCELLATION: Workflow[CancellationState] = Workflow(
    name=CANCELLATION_WORKFLOW,
    state=CancellationState,
    steps=(
        Step("cancel", cancel),
        # Recorded with the next step (one transaction less); after a crash it simply runs
        # again with the same key, which the processor answers from its record.
        Step("give_money_back", give_money_back, transactional=False, checkpoint=False),
        Step("record", record),
    ),
    result=_result,
)


# -- starting it -----------------------------------------------------------------------------------


async def cancel_order(
    runtime: Runtime,
    order_id: str,
    *,
    actor: str,
    user_id: str | None = None,
    reason: str | None = None,
) -> OrderInfo:
    """Cancel an order that has not shipped: state first, with the stock back, then the money.

    ``user_id``: the customer asking (someone else's order is a 404); None for staff.
    409 ``invalid_transition`` when the order is past cancelling (or another cancel won).
    When the processor has not given the money back yet, the cancelled order is answered all
    the same (``payment_released_at`` empty): the worker finishes it.
    """
    check_actor(actor)
    reason = check_reason(reason)

    async def prepare(uow: UnitOfWork, run_id: str) -> CancellationState:
        return CancellationState(order_id=order_id, actor=actor, reason=reason, user_id=user_id)

    return await _run(runtime, order_id, prepare)


async def finish_cancellation(
    runtime: Runtime, order_id: str, *, actor: str = SYSTEM_ACTOR
) -> OrderInfo:
    """Finish a cancelled order's cancellation now: resume its run (waiting for the processor),
    or take over an order moved to ``cancelled`` without one. 409 ``not_cancelled`` for an
    order that is not cancelled."""
    check_actor(actor)
    try:
        resumed = await workflows.resume(runtime, CANCELLATION, order_id)
    except Problem as exc:
        if exc.code != RELEASE_PENDING:
            raise
        resumed = {}
    if resumed is not None:
        return await _order(runtime, order_id)

    async def adopt(uow: UnitOfWork, run_id: str) -> CancellationState:
        row = await order_row(uow, order_id)
        if row is None:
            raise not_found("Order", order_id)
        if row.status != "cancelled":
            raise Problem(
                409,
                "not_cancelled",
                f"The order is {row.status}; there is no cancellation to finish",
                status_now=row.status,
            )
        return CancellationState(order_id=order_id, actor=actor, adopted=True)

    return await _run(runtime, order_id, adopt)


async def release_payment(runtime: Runtime, order_id: str, *, actor: str) -> OrderInfo:
    """Give a cancelled order's money back now (what the worker retries by itself); 409
    ``payment_not_released`` while the processor still has not done it."""
    order = await finish_cancellation(runtime, order_id, actor=actor)
    if order.payment_released_at is None:
        raise Problem(
            409,
            "payment_not_released",
            "The payment provider has not released the payment yet; it will be retried",
        )
    return order


async def take_over(runtime: Runtime, order_id: str) -> bool:
    """An order became ``cancelled``: unless its cancellation already has a run (the usual
    case), take it over. True when this call started it. Never raises a problem (the outbox
    consumer calling it must not stop at one order)."""
    async with runtime.db.transaction() as uow:
        if await workflows.find_run(uow, CANCELLATION_WORKFLOW, order_id) is not None:
            return False
        row = await order_row(uow, order_id)
    if row is None or row.status != "cancelled":
        return False
    try:
        await finish_cancellation(runtime, order_id)
    except Problem as exc:
        log.info("order %s: taking the cancellation over: %s", order_id, exc.code)
    return True


async def change_status(
    runtime: Runtime, order_id: str, to_status: str, *, actor: str, reason: str | None = None
) -> OrderInfo:
    """A status change by hand (staff): the machine still decides, and ``cancelled`` runs the
    whole cancellation (money back, stock back) like any other cancel."""
    check_status(to_status, "to")
    if to_status == "cancelled":
        return await cancel_order(runtime, order_id, actor=actor, reason=reason)

    async def move(uow: UnitOfWork) -> OrderInfo:
        return await transition(uow, order_id, to_status, actor=actor, reason=reason)

    return await runtime.db.run(move)


async def _run(
    runtime: Runtime,
    order_id: str,
    prepare: workflows.Prepare[CancellationState],
) -> OrderInfo:
    try:
        await workflows.start(runtime, CANCELLATION, key=order_id, prepare=prepare)
    except Problem as exc:
        if exc.code != RELEASE_PENDING:
            raise
    return await _order(runtime, order_id)


async def _order(runtime: Runtime, order_id: str) -> OrderInfo:
    async with runtime.db.transaction() as uow:
        order = await get_order(uow, order_id)
    assert order is not None
    return order
