"""Returns: a customer asks to send back delivered units, staff approve or reject, receive the
goods (back on the shelf, or written off as damaged) and the refund saga gives the money back.

**Requesting** (:func:`request_return`): each line may take at most the units delivered (in
delivered shipments) minus those already in a return that was not rejected, within
``return_window_days`` of the line's last delivery. The check and the insert run in one
transaction that first takes a per-order lock (an advisory lock on PostgreSQL; SQLite's
``BEGIN IMMEDIATE`` serialises writers anyway), so concurrent requests can never return more
than was delivered. The order goes to ``return_requested``.

**Receiving** (:func:`receive_return`), in one transaction: each line is restocked at a
warehouse (``inventory.restock``, a ledger ``restock`` row) or written off (restocked, then an
``adjust`` of the same units with the reason, so the ledger tells what came back and what was
thrown away); the units count as returned on the order (``orders.record_returned``); the
refund amount is fixed: for each line the returned units' share of the line's total (discount
and tax included; ``unit_share`` makes all units of a line add up to exactly its total), plus
the shipping when the order is now fully returned and ``refund_shipping_on_full_return`` is
set. ``ReturnReceived`` is published.

**Refunding** (:func:`refund_return`): ``orders.refund_order`` (the same refund path as a
cancellation) with the key ``return:<id>``: a timeout leaves the request ``received`` and the
refund is retried with the same key (by staff, or the ``returns.finish_refunds`` job), so it
is made once. Recording it moves the request to ``refunded`` with a conditional update in the
same transaction as the order's ``refunded_total``, and publishes ``RefundIssued``.

The order's status follows its requests (:func:`_settle_order`): ``return_requested`` while one
is open, ``returned`` while goods are in but not yet refunded, then ``refunded``; rejecting the
only open request puts it back to ``delivered``.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Row, Table, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato import events
from mercato.db import Database, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.fulfilment.service import unit_share
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments.service import PaymentProvider
from mercato.problems import Problem, not_found, validation_problem
from mercato.returns.models import DISPOSITIONS, RETURN_STATUSES, ReturnLine, ReturnRequest

log = logging.getLogger("mercato.returns")

Executor = AsyncSession | AsyncConnection

REQUESTS = cast(Table, ReturnRequest.__table__)
LINES = cast(Table, ReturnLine.__table__)

RETURN_REQUESTED = "ReturnRequested"
RETURN_RECEIVED = "ReturnReceived"
RETURN_REJECTED = "ReturnRejected"
REFUND_ISSUED = "RefundIssued"

OPEN: tuple[str, ...] = ("requested", "approved")
COUNTED: tuple[str, ...] = ("requested", "approved", "received", "refunded")
"""Requests whose units are spoken for (everything but a rejection)."""
MAX_REASON = 500
MAX_PAGE = 200
REFUND_GRACE = timedelta(seconds=60)
_LOCK_SPACE = 0x2E7B


# -- what callers get ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReturnLineInfo:
    order_line_id: str
    quantity: int
    disposition: str | None
    warehouse_code: str | None
    amount: int


@dataclass(frozen=True, slots=True)
class ReturnInfo:
    id: str
    order_id: str
    user_id: str
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


@dataclass(frozen=True, slots=True)
class Disposition:
    """What staff did with one returned line when it arrived."""

    order_line_id: str
    disposition: str  # restock | write_off
    warehouse: str | None = None  # default: the warehouse that sent it


def refund_key(return_id: str) -> str:
    return f"return:{return_id}"


# -- reading ---------------------------------------------------------------------------------------


async def _infos(executor: Executor, rows: Sequence[Row[Any]]) -> list[ReturnInfo]:
    ids = [r.id for r in rows]
    lines: dict[str, list[ReturnLineInfo]] = defaultdict(list)
    if ids:
        for line in await executor.execute(
            select(LINES).where(LINES.c.request_id.in_(ids)).order_by(LINES.c.id)
        ):
            lines[line.request_id].append(
                ReturnLineInfo(
                    order_line_id=line.order_line_id,
                    quantity=line.quantity,
                    disposition=line.disposition,
                    warehouse_code=line.warehouse_code,
                    amount=line.amount,
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


async def get_return(executor: Executor, return_id: str) -> ReturnInfo | None:
    rows = (await executor.execute(select(REQUESTS).where(REQUESTS.c.id == return_id))).all()
    found = await _infos(executor, rows)
    return found[0] if found else None


async def returns_for_order(executor: Executor, order_id: str) -> list[ReturnInfo]:
    rows = (
        await executor.execute(
            select(REQUESTS)
            .where(REQUESTS.c.order_id == order_id)
            .order_by(REQUESTS.c.created_at, REQUESTS.c.id)
        )
    ).all()
    return await _infos(executor, rows)


async def list_returns(
    executor: Executor,
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
        await executor.execute(query.order_by(REQUESTS.c.created_at, REQUESTS.c.id).limit(limit))
    ).all()
    return await _infos(executor, rows)


async def units_spoken_for(executor: Executor, order_id: str) -> dict[str, int]:
    """Per order line: units in returns that were not rejected."""
    rows = await executor.execute(
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


async def _lock_order(conn: AsyncConnection, order_id: str) -> None:
    """Serialise return bookkeeping per order (PostgreSQL; SQLite writers queue already)."""
    if conn.dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(order_id.encode()).digest()[:4], "big", signed=True)
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(:space, :key)"), {"space": _LOCK_SPACE, "key": key}
    )


async def request_return(
    conn: AsyncConnection,
    order_id: str,
    *,
    user_id: str,
    lines: Sequence[tuple[str, int]],
    reason: str,
    window_days: int,
    now: datetime | None = None,
) -> ReturnInfo:
    """A customer asks to return units of delivered lines (see the module docstring).

    404 for someone else's order; 422 ``unknown_order_line``, ``line_not_delivered``,
    ``return_window_closed``, ``return_exceeds_delivered``; 409 ``order_not_delivered`` when
    the order as a whole cannot take a return now. Nothing is written on any of them.
    """
    reason = _check_reason(reason)
    wanted = _check_lines(lines)
    now = now or utcnow()
    # Lock first: what is read below (the order's status, the units spoken for) must be what
    # the insert is decided on.
    await _lock_order(conn, order_id)
    order = await orders.get_customer_order(conn, order_id, user_id)
    if order is None:
        raise not_found("Order", order_id)
    known = {line.id for line in order.lines}
    delivered = await fulfilment.delivered_units(conn, order_id)
    taken = await units_spoken_for(conn, order_id)
    window = timedelta(days=window_days)
    for line_id, quantity in sorted(wanted.items()):
        if line_id not in known:
            raise validation_problem(
                "lines", f"the order has no line {line_id!r}", code="unknown_order_line"
            )
        got = delivered.get(line_id)
        if got is None:
            raise Problem(
                422,
                "line_not_delivered",
                f"Line {line_id} has not been delivered yet; it can be returned once it arrives",
                order_line_id=line_id,
            )
        if now - got.last_delivered_at > window:
            raise Problem(
                422,
                "return_window_closed",
                f"Line {line_id} was delivered more than {window_days} days ago",
                order_line_id=line_id,
                return_window_days=window_days,
            )
        left = got.quantity - taken.get(line_id, 0)
        if quantity > left:
            raise Problem(
                422,
                "return_exceeds_delivered",
                f"Line {line_id}: {quantity} unit(s) asked, {left} delivered and not yet returned",
                order_line_id=line_id,
                returnable=max(left, 0),
                requested=quantity,
            )
    actor = f"customer:{user_id}"[: orders.MAX_ACTOR]
    if order.status != "return_requested":
        if not orders.can_transition(order.status, "return_requested"):
            raise Problem(
                409,
                "order_not_delivered",
                f"The order is {order.status}; items can be returned once it is delivered",
                status_now=order.status,
            )
        await orders.transition(conn, order_id, "return_requested", actor=actor, reason=reason)
    return_id = new_id("rma")
    await conn.execute(
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
    await conn.execute(
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
        conn,
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
    found = await get_return(conn, return_id)
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


async def _move(
    conn: AsyncConnection,
    return_id: str,
    to: str,
    sources: tuple[str, ...],
    **values: Any,
) -> ReturnInfo:
    now = utcnow()
    done = await conn.execute(
        update(REQUESTS)
        .where(REQUESTS.c.id == return_id, REQUESTS.c.status.in_(sources))
        .values(status=to, updated_at=now, **values)
    )
    found = await get_return(conn, return_id)
    if found is None:
        raise not_found("Return", return_id)
    if done.rowcount != 1:
        raise Problem(
            409,
            "invalid_return_state",
            f"The return is {found.status}; it cannot become {to}",
            status_now=found.status,
        )
    return found


async def approve_return(
    conn: AsyncConnection, return_id: str, *, actor: str, note: str | None = None
) -> ReturnInfo:
    """Staff agree to take the goods back (the customer may send them). Approving an approved
    return changes nothing."""
    note = _check_note(note)
    current = await get_return(conn, return_id)
    if current is not None and current.status == "approved":
        return current
    values: dict[str, Any] = {"decided_at": utcnow()}
    if note is not None:
        values["staff_note"] = note
    return await _move(conn, return_id, "approved", ("requested",), **values)


async def reject_return(
    conn: AsyncConnection, return_id: str, *, actor: str, note: str | None = None
) -> ReturnInfo:
    """Staff refuse the return; its units may be asked for again."""
    note = _check_note(note)
    values: dict[str, Any] = {"decided_at": utcnow()}
    if note is not None:
        values["staff_note"] = note
    current = await get_return(conn, return_id)
    if current is None:
        raise not_found("Return", return_id)
    await _lock_order(conn, current.order_id)
    found = await _move(conn, return_id, "rejected", OPEN, **values)
    await _settle_order(conn, found.order_id, actor)
    await events.publish(
        conn,
        RETURN_REJECTED,
        found.order_id,
        {"order_id": found.order_id, "return_id": return_id, "reason": note},
    )
    return found


async def _settle_order(conn: AsyncConnection, order_id: str, actor: str) -> None:
    """Move the order to where its return requests say it is (see the module docstring)."""
    order = await orders.get_order(conn, order_id)
    if order is None:
        return
    counts: dict[str, int] = defaultdict(int)
    for status, n in await conn.execute(
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
        await orders.transition(conn, order_id, status, actor=actor)


# -- receiving -------------------------------------------------------------------------------------


def _check_dispositions(
    found: ReturnInfo, dispositions: Sequence[Disposition]
) -> dict[str, Disposition]:
    chosen: dict[str, Disposition] = {}
    for n, d in enumerate(dispositions):
        if d.disposition not in DISPOSITIONS:
            raise validation_problem(
                f"lines[{n}].disposition", f"must be one of {', '.join(DISPOSITIONS)}"
            )
        if d.order_line_id in chosen:
            raise validation_problem(f"lines[{n}].order_line_id", "is given twice")
        chosen[d.order_line_id] = d
    expected = {line.order_line_id for line in found.lines}
    if set(chosen) != expected:
        raise validation_problem(
            "lines",
            "must give a disposition for each line of the return, and only for those: "
            + ", ".join(sorted(expected)),
            code="dispositions_mismatch",
        )
    return chosen


async def _receive(
    conn: AsyncConnection,
    return_id: str,
    dispositions: Sequence[Disposition],
    actor: str,
    refund_shipping_on_full_return: bool,
) -> ReturnInfo:
    found = await get_return(conn, return_id)
    if found is None:
        raise not_found("Return", return_id)
    # One receipt per order at a time: the returned counts it reads decide the refund.
    await _lock_order(conn, found.order_id)
    found = await get_return(conn, return_id)
    assert found is not None
    if found.status in ("received", "refunded"):
        return found  # a retry: the goods are in already; only the refund may be left
    if found.status != "approved":
        raise Problem(
            409,
            "invalid_return_state",
            f"The return is {found.status}; only an approved return can be received",
            status_now=found.status,
        )
    chosen = _check_dispositions(found, dispositions)
    order = await orders.get_order(conn, found.order_id)
    assert order is not None
    by_line = {line.id: line for line in order.lines}
    warehouses: dict[str, str] = {}
    for n, line in enumerate(found.lines):
        d = chosen[line.order_line_id]
        code = d.warehouse or await fulfilment.warehouse_of_line(
            conn, found.order_id, line.order_line_id
        )
        if code is None:
            raise validation_problem(
                f"lines[{n}].warehouse", "is required: the line has no warehouse on record"
            )
        warehouses[line.order_line_id] = (await inventory.get_warehouse(conn, code)).code
    amounts: dict[str, int] = {}
    for line in found.lines:
        ordered = by_line[line.order_line_id]
        before = ordered.quantity_returned
        amounts[line.order_line_id] = unit_share(
            ordered.total, ordered.quantity, before + line.quantity
        ) - unit_share(ordered.total, ordered.quantity, before)
    after = await orders.record_returned(
        conn, found.order_id, [(line.order_line_id, line.quantity) for line in found.lines]
    )
    fully_returned = all(line.quantity_returned == line.quantity for line in after.lines)
    with_shipping = fully_returned and refund_shipping_on_full_return and after.shipping > 0
    total = sum(amounts.values()) + (after.shipping if with_shipping else 0)
    # Stock rows in one order for every caller (no deadlocks between concurrent receipts).
    for line in sorted(
        found.lines, key=lambda x: (by_line[x.order_line_id].variant_id, x.order_line_id)
    ):
        variant_id = by_line[line.order_line_id].variant_id
        code = warehouses[line.order_line_id]
        await inventory.restock(conn, variant_id, code, line.quantity, reference=return_id)
        if chosen[line.order_line_id].disposition == "write_off":
            await inventory.adjust(
                conn, variant_id, code, -line.quantity, f"written off: damaged return {return_id}"
            )
        await conn.execute(
            update(LINES)
            .where(LINES.c.request_id == return_id, LINES.c.order_line_id == line.order_line_id)
            .values(
                disposition=chosen[line.order_line_id].disposition,
                warehouse_code=code,
                amount=amounts[line.order_line_id],
            )
        )
    now = utcnow()
    await _move(
        conn,
        return_id,
        "received",
        ("approved",),
        received_at=now,
        refund_amount=total,
        refund_shipping=with_shipping,
    )
    await _settle_order(conn, found.order_id, actor)
    await events.publish(
        conn,
        RETURN_RECEIVED,
        found.order_id,
        {
            "order_id": found.order_id,
            "return_id": return_id,
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
    received = await get_return(conn, return_id)
    assert received is not None
    return received


async def receive_return(
    db: Database,
    provider: PaymentProvider,
    return_id: str,
    dispositions: Sequence[Disposition],
    *,
    actor: str,
    refund_shipping_on_full_return: bool = True,
) -> ReturnInfo:
    """The goods arrived: restock or write off each line, then refund (see the module
    docstring). Calling it again after the goods are in only retries the refund."""

    async def work(conn: AsyncConnection) -> ReturnInfo:
        return await _receive(conn, return_id, dispositions, actor, refund_shipping_on_full_return)

    await inventory.in_transaction(db, work)
    return await refund_return(db, provider, return_id, actor=actor)


# -- refunding -------------------------------------------------------------------------------------


async def refund_return(
    db: Database, provider: PaymentProvider, return_id: str, *, actor: str
) -> ReturnInfo:
    """Refund a received return, once (its key is ``return:<id>``). While the provider's answer
    is unknown the return stays ``received`` (``refund_pending``); call again to finish."""
    async with db.connect() as conn:
        found = await get_return(conn, return_id)
    if found is None:
        raise not_found("Return", return_id)
    if found.status == "refunded":
        return found
    if found.status != "received":
        raise Problem(
            409,
            "invalid_return_state",
            f"The return is {found.status}; only received goods are refunded",
            status_now=found.status,
        )

    async def record(conn: AsyncConnection) -> bool:
        await _lock_order(conn, found.order_id)
        now = utcnow()
        done = await conn.execute(
            update(REQUESTS)
            .where(REQUESTS.c.id == return_id, REQUESTS.c.status == "received")
            .values(status="refunded", refunded_at=now, updated_at=now)
        )
        if done.rowcount != 1:
            return False
        await _settle_order(conn, found.order_id, actor)
        await events.publish(
            conn,
            REFUND_ISSUED,
            found.order_id,
            {
                "order_id": found.order_id,
                "return_id": return_id,
                "amount": found.refund_amount,
                "currency": found.currency,
                "shipping_refunded": found.refund_shipping,
            },
        )
        return True

    if found.refund_amount == 0:
        async with db.connect() as conn:
            await record(conn)
    else:
        await orders.refund_order(
            db,
            provider,
            found.order_id,
            found.refund_amount,
            refund_key(return_id),
            record=record,
        )
    async with db.connect() as conn:
        after = await get_return(conn, return_id)
    assert after is not None
    return after


async def finish_refunds(
    db: Database,
    provider: PaymentProvider,
    *,
    older_than: datetime | None = None,
    limit: int = 50,
) -> int:
    """Refund received returns whose refund did not finish; returns how many are now done."""
    query = select(REQUESTS.c.id).where(REQUESTS.c.status == "received")
    if older_than is not None:
        query = query.where(REQUESTS.c.updated_at < older_than)
    async with db.connect() as conn:
        ids = list((await conn.scalars(query.order_by(REQUESTS.c.updated_at).limit(limit))).all())
    done = 0
    for return_id in ids:
        try:
            after = await refund_return(db, provider, return_id, actor="system:returns")
        except Problem as exc:
            log.warning("return %s: refund refused: %s", return_id, exc.code)
            continue
        done += after.status == "refunded"
    return done


# -- for the back office ---------------------------------------------------------------------------


async def count_by_status(executor: Executor) -> dict[str, int]:
    """How many return requests are in each status (statuses with none are left out)."""
    rows = await executor.execute(
        select(REQUESTS.c.status, func.count()).group_by(REQUESTS.c.status)
    )
    return {r[0]: int(r[1]) for r in rows}
