"""Receiving returned goods and refunding them, as a durable workflow
(``returns.return_and_refund``, one run per return, keyed by its id).

Before it starts, staff's receipt is checked: the return must be approved, and each of its
lines needs a disposition (``restock`` or ``write_off``) and a warehouse (by default the one
that sent it). Every problem of the receipt is answered at once, naming its line.

1. **receive** (one transaction): each line is restocked at its warehouse
   (``inventory.restock``, a ledger ``restock`` row) or written off (restocked, then an ``adjust``
   of the same units with the reason, so the ledger tells what came back and what was thrown
   away); the units count as returned on the order (``orders.record_returned``); the refund
   amount is fixed: for each line the returned units' share of the line's total (discount and
   tax included; ``unit_share`` makes all units of a line add up to exactly its total), plus
   the shipping when the order is now fully returned and ``refund_shipping_on_full_return`` is
   set. The return is ``received``, the order follows, ``ReturnReceived`` is published. No
   compensation: goods that came in stay in.
2. **refund** (the payment processor, outside any transaction) with the key ``return:<id>``:
   an unknown answer or a refusal makes the run wait (``RetryLater``) and the worker retries
   with the same key, so it is made once; the return stays ``received`` (``refund_pending``)
   meanwhile, and staff may retry it at once (:func:`refund_return`).
3. **record** (one transaction): the return is ``refunded``, the order's ``refunded_total``
   grows by the amount and the order is settled (``refunded`` once nothing is left open),
   ``RefundIssued`` is published with the refund split by order part
   (:func:`~mercato.returns.sellers.refund_by_part`), which the marketplace's ledger follows.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import update

from mercato import events, workflows
from mercato.db import UnitOfWork, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem, not_found
from mercato.returns.models import DISPOSITIONS
from mercato.returns.requests import (
    LINES,
    REQUESTS,
    ReturnInfo,
    get_return,
    lock_order,
    move_return,
    returns_for_order,
    settle_order,
)
from mercato.returns.sellers import refund_by_part
from mercato.runtime import Runtime
from mercato.workflows import RetryLater, Step, StepContext, Workflow

log = logging.getLogger("mercato.returns")

WORKFLOW = "returns.return_and_refund"
RETURN_RECEIVED = "ReturnReceived"
REFUND_ISSUED = "RefundIssued"
REFUND_PENDING = "refund_pending"


@dataclass(frozen=True, slots=True)
class Disposition:
    """What staff did with one returned line when it arrived."""

    order_line_id: str
    disposition: str  # restock | write_off
    warehouse: str | None = None  # default: the warehouse that sent it


def refund_key(return_id: str) -> str:
    return f"return:{return_id}"


class LineReceipt(BaseModel):
    order_line_id: str
    disposition: str
    warehouse: str


class ReturnRefundState(BaseModel):
    return_id: str
    order_id: str
    actor: str
    receipt: list[LineReceipt] = []
    """Empty when the goods were in already (the run only refunds)."""
    refund_shipping_on_full_return: bool = True
    refund_amount: int = 0
    currency: str = ""
    refunded_already: bool = False


# -- before it starts: is the receipt complete? ------------------------------------------------


def _invalid_state(found: ReturnInfo, needs: str) -> Problem:
    return Problem(
        409,
        "invalid_return_state",
        f"The return is {found.status}; {needs}",
        status_now=found.status,
    )


async def check_receipt(
    uow: UnitOfWork, found: ReturnInfo, dispositions: Sequence[Disposition]
) -> list[LineReceipt]:
    """Each line of the return once, each with a known disposition and warehouse; a 422
    listing every problem (``lines[<n>].<field>``, n in the order given) otherwise."""
    if found.status != "approved":
        raise _invalid_state(found, "only an approved return can be received")
    errors: list[dict[str, str]] = []

    def wrong(field: str, message: str) -> None:
        errors.append({"field": field, "message": message, "type": "validation_error"})

    known = {w.code for w in await inventory.list_warehouses(uow)}
    expected = {line.order_line_id for line in found.lines}
    chosen: dict[str, LineReceipt] = {}
    for n, d in enumerate(dispositions):
        if d.disposition not in DISPOSITIONS:
            wrong(f"lines[{n}].disposition", f"must be one of {', '.join(DISPOSITIONS)}")
        if d.order_line_id in chosen:
            wrong(f"lines[{n}].order_line_id", "is given twice")
        code = (d.warehouse or "").strip().upper() or await fulfilment.warehouse_of_line(
            uow, found.order_id, d.order_line_id
        )
        if code is None:
            if d.order_line_id in expected:
                wrong(f"lines[{n}].warehouse", "is required: the line has no warehouse on record")
        elif code not in known:
            wrong(f"lines[{n}].warehouse", f"no warehouse with code {code!r}")
        chosen[d.order_line_id] = LineReceipt(
            order_line_id=d.order_line_id, disposition=d.disposition, warehouse=code or ""
        )
    if errors:
        names = ", ".join(e["field"] for e in errors)
        raise Problem(
            422,
            "validation_error",
            f"Invalid fields: {names}",
            title="Invalid request",
            errors=errors,
        )
    if set(chosen) != expected:
        raise Problem(
            422,
            "dispositions_mismatch",
            "lines: must give a disposition for each line of the return, and only for those: "
            + ", ".join(sorted(expected)),
            title="Invalid request",
            errors=[{"field": "lines", "message": "must name each line of the return once"}],
        )
    return [chosen[line.order_line_id] for line in found.lines]


# -- 1. receive the goods --------------------------------------------------------------------------


async def receive(ctx: StepContext, st: ReturnRefundState) -> None:
    uow = ctx.uow
    # One receipt per order at a time: the returned counts it reads decide the refund.
    await lock_order(uow, st.order_id)
    found = await get_return(uow, st.return_id)
    if found is None:
        raise not_found("Return", st.return_id)
    st.currency = found.currency
    if found.status in ("received", "refunded"):
        # The goods are in already (a receipt recorded before its run): only the refund is left.
        st.refund_amount = found.refund_amount
        st.refunded_already = found.status == "refunded"
        return
    if found.status != "approved" or not st.receipt:
        raise _invalid_state(found, "only an approved return can be received")
    chosen = {r.order_line_id: r for r in st.receipt}
    order = await orders.get_order(uow, found.order_id)
    assert order is not None
    by_line = {line.id: line for line in order.lines}
    amounts: dict[str, int] = {}
    for line in found.lines:
        ordered = by_line[line.order_line_id]
        before = ordered.quantity_returned
        amounts[line.order_line_id] = fulfilment.unit_share(
            ordered.total, ordered.quantity, before + line.quantity
        ) - fulfilment.unit_share(ordered.total, ordered.quantity, before)
    after = await orders.record_returned(
        uow, found.order_id, [(line.order_line_id, line.quantity) for line in found.lines]
    )
    fully_returned = all(line.quantity_returned == line.quantity for line in after.lines)
    with_shipping = fully_returned and st.refund_shipping_on_full_return and after.shipping > 0
    total = sum(amounts.values()) + (after.shipping if with_shipping else 0)
    # Stock rows in one order for every caller (no deadlocks between concurrent receipts).
    for line in sorted(
        found.lines, key=lambda x: (by_line[x.order_line_id].variant_id, x.order_line_id)
    ):
        variant_id = by_line[line.order_line_id].variant_id
        receipt = chosen[line.order_line_id]
        await inventory.restock(
            uow, variant_id, receipt.warehouse, line.quantity, reference=st.return_id
        )
        if receipt.disposition == "write_off":
            await inventory.adjust(
                uow,
                variant_id,
                receipt.warehouse,
                -line.quantity,
                f"written off: damaged return {st.return_id}",
            )
        await uow.execute(
            update(LINES)
            .where(LINES.c.request_id == st.return_id, LINES.c.order_line_id == line.order_line_id)
            .values(
                disposition=receipt.disposition,
                warehouse_code=receipt.warehouse,
                amount=amounts[line.order_line_id],
            )
        )
    await move_return(
        uow,
        st.return_id,
        "received",
        ("approved",),
        received_at=utcnow(),
        refund_amount=total,
        refund_shipping=with_shipping,
    )
    st.refund_amount = total
    await settle_order(uow, found.order_id, st.actor)
    await events.publish(
        uow,
        RETURN_RECEIVED,
        found.order_id,
        {
            "order_id": found.order_id,
            "return_id": st.return_id,
            "refund_amount": total,
            "currency": found.currency,
            "lines": [
                {
                    "order_line_id": line.order_line_id,
                    "quantity": line.quantity,
                    "disposition": chosen[line.order_line_id].disposition,
                }
                for line in found.lines
            ],
        },
    )


# -- 2. refund -------------------------------------------------------------------------------------


async def refund(ctx: StepContext, st: ReturnRefundState) -> None:
    if st.refunded_already or st.refund_amount == 0:
        return
    provider = payments.get_provider(ctx.runtime)
    delay = workflows.retry_delay(ctx.attempt)
    try:
        done = await orders.refund_payment(
            ctx.db, provider, st.order_id, st.refund_amount, refund_key(st.return_id)
        )
    except Problem as refused:
        log.warning("return %s: refund refused (%s); retried later", st.return_id, refused.code)
        raise RetryLater(refused, delay=max(delay, 60.0)) from refused
    if not done:
        raise RetryLater(
            Problem(
                503,
                REFUND_PENDING,
                "The payment provider has not confirmed the refund yet; it will be retried",
                return_id=st.return_id,
            ),
            delay=delay,
        )


# -- 3. record it: the return refunded, the order settled ------------------------------------------


async def record(ctx: StepContext, st: ReturnRefundState) -> None:
    if st.refunded_already:
        return
    uow = ctx.uow
    await lock_order(uow, st.order_id)
    now = utcnow()
    moved = await uow.changed(
        update(REQUESTS)
        .where(REQUESTS.c.id == st.return_id, REQUESTS.c.status == "received")
        .values(status="refunded", refunded_at=now, updated_at=now)
    )
    if moved != 1:
        return
    if st.refund_amount:
        await orders.record_refund(uow, st.order_id, st.refund_amount)
        log.info("order %s: refunded %d (%s)", st.order_id, st.refund_amount, st.return_id)
    await settle_order(uow, st.order_id, st.actor)
    found = await get_return(uow, st.return_id)
    assert found is not None
    await events.publish(
        uow,
        REFUND_ISSUED,
        st.order_id,
        {
            "order_id": st.order_id,
            "return_id": st.return_id,
            "amount": found.refund_amount,
            "currency": found.currency,
            "shipping_refunded": found.refund_shipping,
            # Whose money it was: the marketplace reverses each seller part's share.
            "parts": [
                {"part_id": r.part_id, "seller_id": r.seller_id, "amount": r.amount}
                for r in await refund_by_part(uow, found)
            ],
        },
    )


def _result(st: ReturnRefundState) -> dict[str, Any]:
    return {"return_id": st.return_id, "refund_amount": st.refund_amount}


RETURN_AND_REFUND: Workflow[ReturnRefundState] = Workflow(
    name=WORKFLOW,
    state=ReturnRefundState,
    steps=(
        Step("receive", receive),
        # Recorded with the next step (one transaction less); after a crash it runs again with
        # the same key, which re-sends exactly the refund started under it.
        Step("refund", refund, transactional=False, checkpoint=False),
        Step("record", record),
    ),
    result=_result,
)


# -- starting it -----------------------------------------------------------------------------------


async def receive_return(
    runtime: Runtime,
    return_id: str,
    dispositions: Sequence[Disposition],
    *,
    actor: str,
    refund_shipping_on_full_return: bool = True,
) -> ReturnInfo:
    """The goods arrived: restock or write off each line, then refund (see the module
    docstring). Calling it again after the goods are in only retries the refund. While the
    processor's answer is unknown the return is answered ``received`` (``refund_pending``)."""

    async def prepare(uow: UnitOfWork, run_id: str) -> ReturnRefundState:
        found = await get_return(uow, return_id)
        if found is None:
            raise not_found("Return", return_id)
        state = ReturnRefundState(
            return_id=return_id,
            order_id=found.order_id,
            actor=actor,
            refund_shipping_on_full_return=refund_shipping_on_full_return,
        )
        if found.status not in ("received", "refunded"):
            state.receipt = await check_receipt(uow, found, dispositions)
        return state

    return await _run(runtime, return_id, prepare)


async def refund_return(runtime: Runtime, return_id: str, *, actor: str) -> ReturnInfo:
    """Refund a received return now (its key is ``return:<id>``: made once, whatever the
    retries). While the processor's answer is unknown the return stays ``received``
    (``refund_pending``); 409 ``invalid_return_state`` before the goods are in."""

    async def prepare(uow: UnitOfWork, run_id: str) -> ReturnRefundState:
        found = await get_return(uow, return_id)
        if found is None:
            raise not_found("Return", return_id)
        if found.status != "received":
            # Refunded (the engine answers from its run) or not received yet.
            raise _invalid_state(found, "only received goods are refunded")
        return ReturnRefundState(return_id=return_id, order_id=found.order_id, actor=actor)

    try:
        return await _run(runtime, return_id, prepare)
    except Problem as exc:
        if exc.code != "invalid_return_state" or exc.extra.get("status_now") != "refunded":
            raise
    async with runtime.db.transaction() as uow:
        found = await get_return(uow, return_id)
    assert found is not None
    return found


async def refund_waiting(runtime: Runtime, order_id: str, *, actor: str) -> int:
    """Refund every received return of the order whose refund has not gone through; returns
    how many. 409 ``nothing_to_refund``; 503 ``refund_pending`` while the processor has not
    confirmed them all (each is made once, whatever the retries)."""
    async with runtime.db.transaction() as uow:
        waiting = [r for r in await returns_for_order(uow, order_id) if r.refund_pending]
    if not waiting:
        raise Problem(409, "nothing_to_refund", "No received return is waiting for a refund")
    done = 0
    for found in waiting:
        after = await refund_return(runtime, found.id, actor=actor)
        done += after.status == "refunded"
    if done < len(waiting):
        raise Problem(
            503,
            REFUND_PENDING,
            "The payment provider has not confirmed every refund yet; try again shortly",
        )
    return done


async def _run(
    runtime: Runtime, return_id: str, prepare: workflows.Prepare[ReturnRefundState]
) -> ReturnInfo:
    try:
        await workflows.start(runtime, RETURN_AND_REFUND, key=return_id, prepare=prepare)
    except Problem as exc:
        if exc.code != REFUND_PENDING:
            raise
    async with runtime.db.transaction() as uow:
        found = await get_return(uow, return_id)
    assert found is not None
    return found
