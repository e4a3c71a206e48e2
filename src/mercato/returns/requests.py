"""Return requests: a customer asks to send back delivered units, staff approve or reject.

**Requesting** (:func:`request_return`): each line may take at most the units delivered (in
delivered shipments) minus those already in a return that was not rejected, within
``return_window_days`` of the line's last delivery; :func:`returnable_lines` applies the same
rule to say what a customer may still return. The check and the insert run in one unit of work
that first takes a per-order lock (an advisory lock on PostgreSQL; SQLite's ``BEGIN IMMEDIATE``
serialises writers anyway), so concurrent requests can never return more than was delivered.
The order goes to ``return_requested``.

The order's status follows its requests (:func:`settle_order`): ``return_requested`` while one
is open, ``returned`` while goods are in but not yet refunded, then ``refunded``; rejecting the
only open request puts it back to ``delivered``. Receiving and refunding are the
return-and-refund workflow (:mod:`mercato.returns.return_and_refund`).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import Row, Table, func, insert, select, text, update

from mercato import events
from mercato.db import UnitOfWork, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.ids import new_id
from mercato.orders import service as orders
from mercato.problems import Problem, not_found, validation_problem
from mercato.returns.models import RETURN_STATUSES, ReturnLine, ReturnRequest

REQUESTS = cast(Table, ReturnRequest.__table__)
LINES = cast(Table, ReturnLine.__table__)

RETURN_REQUESTED = "ReturnRequested"
RETURN_REJECTED = "ReturnRejected"

OPEN: tuple[str, ...] = ("requested", "approved")
COUNTED: tuple[str, ...] = ("requested", "approved", "received", "refunded")
"""Requests whose units are spoken for (everything but a rejection)."""
MAX_REASON = 500
MAX_PAGE = 200
_LOCK_SPACE = 0x2E7B


# -- what callers get ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReturnLineInfo:
    order_line_id: str
    quantity: int
    disposition: str | None
    warehouse_code: str | None
    amount: int
    seller_id: str = orders.HOUSE_SELLER
    """Whose the order line is (the returned goods go back to that seller's part)."""
    part_id: str | None = None


@dataclass(frozen=True, slots=True)
class ReturnInfo:
    id: str
    order_id: str
    user_id: str | None
    """The order's customer; None for a guest's order."""
    status: str
    reason: str
    staff_note: str | None
    currency: str
    refund_amount: int
    refund_shipping: bool
    created_at: datetime
    updated_at: datetime
    decided_at: datetime | None
    received_at: datetime | None
    refunded_at: datetime | None
    lines: tuple[ReturnLineInfo, ...]

    @property
    def refund_pending(self) -> bool:
        return self.status == "received" and self.refund_amount > 0

    @property
    def can_approve(self) -> bool:
        return self.status == "requested"

    @property
    def can_reject(self) -> bool:
        return self.status in OPEN

    @property
    def can_receive(self) -> bool:
        return self.status == "approved"

    @property
    def seller_ids(self) -> frozenset[str]:
        """The sellers whose lines the return sends back (the house's id for the shop's)."""
        return frozenset(line.seller_id for line in self.lines)


# -- reading ---------------------------------------------------------------------------------------


async def infos(uow: UnitOfWork, rows: Sequence[Row[Any]]) -> list[ReturnInfo]:
    ids = [r.id for r in rows]
    lines: dict[str, list[ReturnLineInfo]] = defaultdict(list)
    if ids:
        found = (
            await uow.execute(select(LINES).where(LINES.c.request_id.in_(ids)).order_by(LINES.c.id))
        ).all()
        # Whose each line is, from the order's lines (a return has no copy of it).
        owners = await orders.line_parts(uow, (line.order_line_id for line in found))
        for line in found:
            owner = owners.get(line.order_line_id)
            lines[line.request_id].append(
                ReturnLineInfo(
                    order_line_id=line.order_line_id,
                    quantity=line.quantity,
                    disposition=line.disposition,
                    warehouse_code=line.warehouse_code,
                    amount=line.amount,
                    seller_id=owner.seller_id if owner else orders.HOUSE_SELLER,
                    part_id=owner.part_id if owner else None,
                )
            )
    return [
        ReturnInfo(
            id=r.id,
            order_id=r.order_id,
            user_id=r.user_id,
            status=r.status,
            reason=r.reason,
            staff_note=r.staff_note,
            currency=r.currency,
            refund_amount=r.refund_amount,
            refund_shipping=bool(r.refund_shipping),
            created_at=r.created_at,
            updated_at=r.updated_at,
            decided_at=r.decided_at,
            received_at=r.received_at,
            refunded_at=r.refunded_at,
            lines=tuple(lines[r.id]),
        )
        for r in rows
    ]


async def get_return(uow: UnitOfWork, return_id: str) -> ReturnInfo | None:
    rows = (await uow.execute(select(REQUESTS).where(REQUESTS.c.id == return_id))).all()
    found = await infos(uow, rows)
    return found[0] if found else None


async def returns_for_order(uow: UnitOfWork, order_id: str) -> list[ReturnInfo]:
    rows = (
        await uow.execute(
            select(REQUESTS)
            .where(REQUESTS.c.order_id == order_id)
            .order_by(REQUESTS.c.created_at, REQUESTS.c.id)
        )
    ).all()
    return await infos(uow, rows)


async def customer_returns(
    uow: UnitOfWork,
    order_id: str,
    user_id: str | None,
    *,
    access_token: str | None = None,
    secret_key: str = "",
) -> list[ReturnInfo] | None:
    """The return requests of the order of customer ``user_id`` or of the holder of its
    ``access_token`` (:func:`mercato.orders.service.order_for`); None when the order is unknown
    or someone else's (callers answer 404 either way)."""
    caller = orders.OrderCaller(user_id=user_id, access_token=access_token)
    if await orders.order_for(uow, order_id, caller, secret_key=secret_key) is None:
        return None
    return await returns_for_order(uow, order_id)


async def list_returns(
    uow: UnitOfWork,
    *,
    status: str | None = None,
    order_id: str | None = None,
    limit: int = 50,
) -> list[ReturnInfo]:
    """Return requests, oldest first (the queue staff works through)."""
    if not 1 <= limit <= MAX_PAGE:
        raise validation_problem("limit", f"must be between 1 and {MAX_PAGE}")
    query = select(REQUESTS)
    if status is not None:
        if status not in RETURN_STATUSES:
            raise validation_problem("status", f"must be one of {', '.join(RETURN_STATUSES)}")
        query = query.where(REQUESTS.c.status == status)
    if order_id is not None:
        query = query.where(REQUESTS.c.order_id == order_id)
    rows = (
        await uow.execute(query.order_by(REQUESTS.c.created_at, REQUESTS.c.id).limit(limit))
    ).all()
    return await infos(uow, rows)


async def units_spoken_for(uow: UnitOfWork, order_id: str) -> dict[str, int]:
    """Per order line: units in returns that were not rejected."""
    rows = await uow.execute(
        select(LINES.c.order_line_id, func.sum(LINES.c.quantity))
        .join(REQUESTS, REQUESTS.c.id == LINES.c.request_id)
        .where(REQUESTS.c.order_id == order_id, REQUESTS.c.status.in_(COUNTED))
        .group_by(LINES.c.order_line_id)
    )
    return {line_id: int(quantity) for line_id, quantity in rows}


# -- requesting ------------------------------------------------------------------------------------


def _check_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise validation_problem("reason", "please tell us why you are returning the items")
    if len(reason) > MAX_REASON:
        raise validation_problem("reason", f"must be at most {MAX_REASON} characters")
    return reason


def _check_lines(lines: Sequence[tuple[str, int]]) -> dict[str, int]:
    if not lines:
        raise validation_problem("lines", "must name at least one line")
    wanted: dict[str, int] = defaultdict(int)
    for n, (line_id, quantity) in enumerate(lines):
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise validation_problem(f"lines[{n}].quantity", "must be a positive whole number")
        wanted[line_id] += quantity
    return dict(wanted)


async def lock_order(uow: UnitOfWork, order_id: str) -> None:
    """Serialise return bookkeeping per order (PostgreSQL; SQLite writers queue already)."""
    if uow.dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(order_id.encode()).digest()[:4], "big", signed=True)
    await uow.execute(
        text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": _LOCK_SPACE, "key": key}
    )


def _left_to_return(
    line_id: str,
    delivered: fulfilment.DeliveredUnits | None,
    taken: dict[str, int],
    window_days: int,
    now: datetime,
) -> int:
    """How many units of a line may still be returned (may be 0 or less when all are spoken
    for); 422 ``line_not_delivered`` or ``return_window_closed`` when none can be."""
    if delivered is None:
        raise Problem(
            422,
            "line_not_delivered",
            f"Line {line_id} has not been delivered yet; it can be returned once it arrives",
            order_line_id=line_id,
        )
    if now - delivered.last_delivered_at > timedelta(days=window_days):
        raise Problem(
            422,
            "return_window_closed",
            f"Line {line_id} was delivered more than {window_days} days ago",
            order_line_id=line_id,
            return_window_days=window_days,
        )
    return delivered.quantity - taken.get(line_id, 0)


def _takes_returns(order: orders.OrderInfo) -> bool:
    return order.status == "return_requested" or orders.can_transition(
        order.status, "return_requested"
    )


@dataclass(frozen=True, slots=True)
class ReturnableLine:
    line: orders.OrderLineInfo
    left: int
    """Units of the line that may still be returned."""


async def returnable_lines(
    uow: UnitOfWork, order: orders.OrderInfo, *, window_days: int, now: datetime | None = None
) -> list[ReturnableLine]:
    """The order's lines a customer may still return, and how many units of each (the rule
    :func:`request_return` applies): delivered within the window, not in another return.
    Empty when the order cannot take a return now."""
    if not _takes_returns(order):
        return []
    delivered = await fulfilment.delivered_units(uow, order.id)
    if not delivered:
        return []
    taken = await units_spoken_for(uow, order.id)
    now = now or utcnow()
    found = []
    for line in order.lines:
        try:
            left = _left_to_return(line.id, delivered.get(line.id), taken, window_days, now)
        except Problem:
            continue
        if left > 0:
            found.append(ReturnableLine(line, left))
    return found


async def request_return(
    uow: UnitOfWork,
    order_id: str,
    *,
    user_id: str | None,
    lines: Sequence[tuple[str, int]],
    reason: str,
    window_days: int,
    now: datetime | None = None,
    access_token: str | None = None,
    secret_key: str = "",
) -> ReturnInfo:
    """A customer (``user_id``), or a guest holding the order's ``access_token``, asks to
    return units of delivered lines (see the module docstring).

    404 for someone else's order; 422 ``unknown_order_line``, ``line_not_delivered``,
    ``return_window_closed``, ``return_exceeds_delivered``; 409 ``order_not_delivered`` when
    the order as a whole cannot take a return now. Nothing is written on any of them.
    """
    reason = _check_reason(reason)
    wanted = _check_lines(lines)
    now = now or utcnow()
    # Lock first: what is read below (the order's status, the units spoken for) must be what
    # the insert is decided on.
    await lock_order(uow, order_id)
    caller = orders.OrderCaller(user_id=user_id, access_token=access_token)
    order = await orders.order_for(uow, order_id, caller, secret_key=secret_key)
    if order is None:
        raise not_found("Order", order_id)
    user_id = order.user_id
    known = {line.id for line in order.lines}
    delivered = await fulfilment.delivered_units(uow, order_id)
    taken = await units_spoken_for(uow, order_id)
    for line_id, quantity in sorted(wanted.items()):
        if line_id not in known:
            raise validation_problem(
                "lines", f"the order has no line {line_id!r}", code="unknown_order_line"
            )
        left = _left_to_return(line_id, delivered.get(line_id), taken, window_days, now)
        if quantity > left:
            raise Problem(
                422,
                "return_exceeds_delivered",
                f"Line {line_id}: {quantity} unit(s) asked, {left} delivered and not yet returned",
                order_line_id=line_id,
                returnable=max(left, 0),
                requested=quantity,
            )
    actor = orders.actor_of(order, caller)
    if order.status != "return_requested":
        if not _takes_returns(order):
            raise Problem(
                409,
                "order_not_delivered",
                f"The order is {order.status}; items can be returned once it is delivered",
                status_now=order.status,
            )
        await orders.transition(uow, order_id, "return_requested", actor=actor, reason=reason)
    return_id = new_id("rma")
    await uow.execute(
        insert(REQUESTS).values(
            id=return_id,
            order_id=order_id,
            user_id=user_id,
            status="requested",
            reason=reason,
            staff_note=None,
            currency=order.currency,
            refund_amount=0,
            refund_shipping=False,
            created_at=now,
            updated_at=now,
        )
    )
    await uow.execute(
        insert(LINES),
        [
            {
                "id": new_id("rml"),
                "request_id": return_id,
                "order_id": order_id,
                "order_line_id": line_id,
                "quantity": quantity,
                "disposition": None,
                "warehouse_code": None,
                "amount": 0,
            }
            for line_id, quantity in sorted(wanted.items())
        ],
    )
    await events.publish(
        uow,
        RETURN_REQUESTED,
        order_id,
        {
            "order_id": order_id,
            "return_id": return_id,
            "user_id": user_id,
            "email": order.email,
            "reason": reason,
            "lines": [{"order_line_id": k, "quantity": v} for k, v in sorted(wanted.items())],
        },
    )
    found = await get_return(uow, return_id)
    assert found is not None
    return found


# -- staff decisions -------------------------------------------------------------------------------


def _check_note(note: str | None) -> str | None:
    if note is None:
        return None
    note = note.strip()
    if len(note) > MAX_REASON:
        raise validation_problem("note", f"must be at most {MAX_REASON} characters")
    return note or None


async def move_return(
    uow: UnitOfWork,
    return_id: str,
    to: str,
    sources: tuple[str, ...],
    **values: Any,
) -> ReturnInfo:
    now = utcnow()
    done = await uow.changed(
        update(REQUESTS)
        .where(REQUESTS.c.id == return_id, REQUESTS.c.status.in_(sources))
        .values(status=to, updated_at=now, **values)
    )
    found = await get_return(uow, return_id)
    if found is None:
        raise not_found("Return", return_id)
    if done != 1:
        raise Problem(
            409,
            "invalid_return_state",
            f"The return is {found.status}; it cannot become {to}",
            status_now=found.status,
        )
    return found


async def approve_return(
    uow: UnitOfWork, return_id: str, *, actor: str, note: str | None = None
) -> ReturnInfo:
    """Staff agree to take the goods back (the customer may send them). Approving an approved
    return changes nothing."""
    note = _check_note(note)
    current = await get_return(uow, return_id)
    if current is not None and current.status == "approved":
        return current
    values: dict[str, Any] = {"decided_at": utcnow()}
    if note is not None:
        values["staff_note"] = note
    return await move_return(uow, return_id, "approved", ("requested",), **values)


async def reject_return(
    uow: UnitOfWork, return_id: str, *, actor: str, note: str | None = None
) -> ReturnInfo:
    """Staff refuse the return; its units may be asked for again."""
    note = _check_note(note)
    values: dict[str, Any] = {"decided_at": utcnow()}
    if note is not None:
        values["staff_note"] = note
    current = await get_return(uow, return_id)
    if current is None:
        raise not_found("Return", return_id)
    await lock_order(uow, current.order_id)
    found = await move_return(uow, return_id, "rejected", OPEN, **values)
    await settle_order(uow, found.order_id, actor)
    await events.publish(
        uow,
        RETURN_REJECTED,
        found.order_id,
        {"order_id": found.order_id, "return_id": return_id, "reason": note},
    )
    return found


Decision = Literal["approve", "reject"]


async def decide_return(
    uow: UnitOfWork, return_id: str, decision: Decision, *, actor: str, note: str | None = None
) -> ReturnInfo:
    """Staff's decision on a request: :func:`approve_return` or :func:`reject_return`."""
    decide = approve_return if decision == "approve" else reject_return
    return await decide(uow, return_id, actor=actor, note=note)


async def settle_order(uow: UnitOfWork, order_id: str, actor: str) -> None:
    """Move the order to where its return requests say it is (see the module docstring)."""
    order = await orders.get_order(uow, order_id)
    if order is None:
        return
    counts: dict[str, int] = defaultdict(int)
    for status, n in await uow.execute(
        select(REQUESTS.c.status, func.count())
        .where(REQUESTS.c.order_id == order_id)
        .group_by(REQUESTS.c.status)
    ):
        counts[status] = int(n)
    if any(counts[s] for s in OPEN):
        return
    path: list[str] = []
    if order.status == "return_requested":
        if counts["received"]:
            path = ["returned"]
        elif counts["refunded"]:
            path = ["returned", "refunded"]
        else:
            path = ["delivered"]
    elif order.status == "returned" and not counts["received"] and counts["refunded"]:
        path = ["refunded"]
    for status in path:
        await orders.transition(uow, order_id, status, actor=actor)


# -- for the back office ---------------------------------------------------------------------------


async def count_by_status(uow: UnitOfWork) -> dict[str, int]:
    """How many return requests are in each status (statuses with none are left out)."""
    rows = await uow.execute(select(REQUESTS.c.status, func.count()).group_by(REQUESTS.c.status))
    return {r[0]: int(r[1]) for r in rows}
