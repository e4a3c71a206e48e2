"""Orders: the state machine (as data), placing an order, transitions, cancellation, listings.

The state machine is :data:`TRANSITIONS`, and nothing else decides which moves are legal::

    from               may go to
    ----------------   -----------------------------------------------
    pending            paid, payment_failed, cancelled
    paid               fulfilling, shipped, cancelled
    fulfilling         shipped, cancelled
    shipped            delivered
    delivered          return_requested
    return_requested   returned, delivered (the return was rejected)
    returned           refunded, return_requested (another partial return)
    refunded           return_requested (a later partial return)
    payment_failed     -  (final)
    cancelled          -  (final)

Partial flows stay coarse on purpose: the order's status says where the order as a whole is,
while the per-line counters (``quantity_shipped``, ``quantity_returned``, kept with conditional
updates by :func:`record_shipped` / :func:`record_returned`) and ``refunded_total`` say how much.
Fulfilment and returns own their shipments and return requests and call :func:`transition`.

A transition is one conditional ``UPDATE ... WHERE id = :id AND status IN (:allowed_from)``
that also bumps the order's ``version`` and remembers the previous status; its row count decides.
The winner writes a history row numbered with the new version (unique per order) and an
``OrderStatusChanged`` event in the same transaction. Anything else is a 409
``invalid_transition`` naming ``from`` and ``to``. So concurrent attempts never give one order two
states, and its history is one line.

Cancellation (:func:`cancel_order`) is allowed from pending, paid and fulfilling while nothing
has shipped (the ``units_shipped = 0`` guard is part of the same conditional update, so it cannot
race a shipment: :func:`record_shipped` bumps that counter on the same row). Its steps:

1. One transaction: the transition to ``cancelled`` (two concurrent cancels: exactly one wins,
   the other gets the 409), and the goods back on the shelf: the order's reservations were
   committed at checkout under the checkout id, and each one is restocked at its warehouse.
   ``stock_returned_at`` is set by a conditional update in the same transaction, so this
   happens once whoever gets there.
2. The money, outside any database transaction (a payment provider call must never hold a
   lock): the authorization is voided when nothing was captured, else what was captured is
   refunded, always with the idempotency key ``cancel:<order id>``, so a retry can never give
   money back twice. ``payment_released_at`` and ``refunded_total`` are then recorded with a
   conditional update.

If step 2 does not finish (the provider timed out or is down), the order simply stays cancelled
with ``payment_released_at`` empty, and the worker job ``orders.finish_cancellations`` retries
both steps for such orders with the same keys until they are done. The same job also finishes
orders moved to ``cancelled`` by a plain :func:`transition` (another module's saga).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Insert, Row, Select, Table, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato import events
from mercato.db import Database, utcnow
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.orders.models import ORDER_STATUSES, Order, OrderHistory, OrderLine
from mercato.payments import service as payments
from mercato.payments.service import PaymentProvider
from mercato.problems import Problem, not_found, validation_problem

log = logging.getLogger("mercato.orders")

Executor = AsyncSession | AsyncConnection

ORDERS = cast(Table, Order.__table__)
LINES = cast(Table, OrderLine.__table__)
HISTORY = cast(Table, OrderHistory.__table__)

ORDER_PLACED = "OrderPlaced"
ORDER_STATUS_CHANGED = "OrderStatusChanged"

# -- the state machine, as data --------------------------------------------------------------------

TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"paid", "payment_failed", "cancelled"}),
    "paid": frozenset({"fulfilling", "shipped", "cancelled"}),
    "payment_failed": frozenset(),
    "cancelled": frozenset(),
    "fulfilling": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset({"delivered"}),
    "delivered": frozenset({"return_requested"}),
    "return_requested": frozenset({"returned", "delivered"}),
    "returned": frozenset({"refunded", "return_requested"}),
    "refunded": frozenset({"return_requested"}),
}
STATUSES: tuple[str, ...] = ORDER_STATUSES
assert set(TRANSITIONS) == set(STATUSES), "every status has a row in the table"
assert all(to <= set(STATUSES) for to in TRANSITIONS.values())

CANCELLABLE: frozenset[str] = frozenset(s for s, to in TRANSITIONS.items() if "cancelled" in to)
SHIPPABLE: frozenset[str] = frozenset({"paid", "fulfilling", "shipped"})
RETURNABLE: frozenset[str] = frozenset(
    {"shipped", "delivered", "return_requested", "returned", "refunded"}
)
FINAL: frozenset[str] = frozenset(s for s, to in TRANSITIONS.items() if not to)


def allowed_from(to_status: str) -> frozenset[str]:
    """The statuses from which ``to_status`` may be reached."""
    return frozenset(s for s, to in TRANSITIONS.items() if to_status in to)


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


def cancel_key(order_id: str) -> str:
    """The idempotency key of a cancellation's void or refund: one per order, ever."""
    return f"cancel:{order_id}"


# -- what callers give and get ---------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLineDraft:
    variant_id: str
    product_id: str
    sku: str
    title: str
    options: dict[str, str]
    quantity: int
    unit_price: int
    subtotal: int
    discount: int
    tax: int
    total: int


@dataclass(frozen=True)
class OrderDraft:
    id: str  # pre-generated by the checkout saga with new_id("ord")
    checkout_id: str  # the saga's id; also the owner of the order's inventory reservations
    user_id: str
    email: str
    currency: str
    lines: tuple[OrderLineDraft, ...]
    subtotal: int
    shipping: int
    discount: int
    tax: int
    total: int
    shipping_address: dict[str, str]
    shipping_method: str
    promo_code: str | None
    payment_intent_id: str


@dataclass(frozen=True, slots=True)
class OrderLineInfo:
    id: str
    position: int
    variant_id: str
    product_id: str
    sku: str
    title: str
    options: dict[str, str]
    quantity: int
    unit_price: int
    subtotal: int
    discount: int
    tax: int
    total: int
    quantity_shipped: int
    quantity_returned: int


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: int
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OrderInfo:
    id: str
    checkout_id: str
    user_id: str
    email: str
    status: str
    version: int
    currency: str
    subtotal: int
    shipping: int
    discount: int
    tax: int
    total: int
    refunded_total: int
    units_shipped: int
    shipping_address: dict[str, Any]
    shipping_method: str
    promo_code: str | None
    payment_intent_id: str
    stock_returned_at: datetime | None
    payment_released_at: datetime | None
    created_at: datetime
    updated_at: datetime
    lines: tuple[OrderLineInfo, ...] = ()
    history: tuple[HistoryEntry, ...] = ()

    @property
    def can_cancel(self) -> bool:
        return self.status in CANCELLABLE and self.units_shipped == 0

    @property
    def next_statuses(self) -> list[str]:
        return sorted(TRANSITIONS[self.status])


@dataclass(frozen=True, slots=True)
class OrderSummary:
    id: str
    user_id: str
    email: str
    status: str
    currency: str
    total: int
    refunded_total: int
    item_count: int
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OrderPage:
    items: list[OrderSummary]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class OrderFilters:
    """Staff search: every given filter must match (``created_to`` is exclusive)."""

    status: str | None = None
    email: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass(frozen=True, slots=True)
class PaymentSummary:
    intent_id: str
    status: str
    currency: str
    card_brand: str | None
    card_last4: str | None
    authorized: int
    captured: int
    refunded: int


# Shipments live in the fulfilment module's tables; it registers a reader here so the order
# page can show them without this module knowing their shape.
ShipmentReader = Callable[[Executor, OrderInfo], Awaitable[list[dict[str, Any]]]]
shipment_readers: list[ShipmentReader] = []


# -- input checks ----------------------------------------------------------------------------------

_CURRENCY = re.compile(r"^[A-Z]{3}$")
MAX_ACTOR = 80
MAX_REASON = 500


def _check_actor(actor: str) -> str:
    if not isinstance(actor, str) or not 0 < len(actor) <= MAX_ACTOR:
        raise ValueError(f"actor must be 1 to {MAX_ACTOR} characters")
    return actor


def _check_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise validation_problem("reason", f"must be at most {MAX_REASON} characters")
    return reason or None


def check_status(status: str, field: str = "status") -> str:
    if status not in TRANSITIONS:
        raise validation_problem(field, f"must be one of {', '.join(STATUSES)}")
    return status


def _is_amount(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_draft(draft: OrderDraft) -> None:
    """A draft comes from the checkout saga, not a client: a bad one is a programming error."""
    problems: list[str] = []
    if not draft.lines:
        problems.append("an order needs at least one line")
    if not _CURRENCY.match(draft.currency):
        problems.append(f"currency {draft.currency!r}")
    for name in ("subtotal", "shipping", "discount", "tax", "total"):
        if not _is_amount(getattr(draft, name)):
            problems.append(f"{name} must be a non-negative int")
    for i, line in enumerate(draft.lines):
        q = line.quantity
        if isinstance(q, bool) or not isinstance(q, int) or q <= 0:
            problems.append(f"lines[{i}].quantity must be a positive int")
        for name in ("unit_price", "subtotal", "discount", "tax", "total"):
            if not _is_amount(getattr(line, name)):
                problems.append(f"lines[{i}].{name} must be a non-negative int")
    if problems:
        raise ValueError("invalid order draft: " + "; ".join(problems))


# -- reading ---------------------------------------------------------------------------------------


def _line_info(row: Row[Any]) -> OrderLineInfo:
    return OrderLineInfo(
        id=row.id,
        position=row.position,
        variant_id=row.variant_id,
        product_id=row.product_id,
        sku=row.sku,
        title=row.title,
        options=dict(row.options or {}),
        quantity=row.quantity,
        unit_price=row.unit_price,
        subtotal=row.subtotal,
        discount=row.discount,
        tax=row.tax,
        total=row.total,
        quantity_shipped=row.quantity_shipped,
        quantity_returned=row.quantity_returned,
    )


def _history_entry(row: Row[Any]) -> HistoryEntry:
    return HistoryEntry(
        seq=row.seq,
        from_status=row.from_status,
        to_status=row.to_status,
        actor=row.actor,
        reason=row.reason,
        created_at=row.created_at,
    )


def _order_info(
    row: Row[Any], lines: Iterable[OrderLineInfo], history: Iterable[HistoryEntry]
) -> OrderInfo:
    return OrderInfo(
        id=row.id,
        checkout_id=row.checkout_id,
        user_id=row.user_id,
        email=row.email,
        status=row.status,
        version=row.version,
        currency=row.currency,
        subtotal=row.subtotal,
        shipping=row.shipping,
        discount=row.discount,
        tax=row.tax,
        total=row.total,
        refunded_total=row.refunded_total,
        units_shipped=row.units_shipped,
        shipping_address=dict(row.shipping_address or {}),
        shipping_method=row.shipping_method,
        promo_code=row.promo_code,
        payment_intent_id=row.payment_intent_id,
        stock_returned_at=row.stock_returned_at,
        payment_released_at=row.payment_released_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        lines=tuple(lines),
        history=tuple(history),
    )


async def _order_row(executor: Executor, order_id: str) -> Row[Any] | None:
    return (await executor.execute(select(ORDERS).where(ORDERS.c.id == order_id))).first()


async def get_order(executor: Executor, order_id: str) -> OrderInfo | None:
    """The order with its lines (in checkout order) and its history (oldest first)."""
    row = await _order_row(executor, order_id)
    if row is None:
        return None
    lines = await executor.execute(
        select(LINES).where(LINES.c.order_id == order_id).order_by(LINES.c.position)
    )
    history = await executor.execute(
        select(HISTORY).where(HISTORY.c.order_id == order_id).order_by(HISTORY.c.seq)
    )
    return _order_info(row, map(_line_info, lines), map(_history_entry, history))


async def get_customer_order(executor: Executor, order_id: str, user_id: str) -> OrderInfo | None:
    """The order if it belongs to ``user_id``; None otherwise (callers answer 404 either way,
    so a customer cannot even learn that someone else's order exists)."""
    order = await get_order(executor, order_id)
    return order if order is not None and order.user_id == user_id else None


async def payment_summary(executor: Executor, order: OrderInfo) -> PaymentSummary | None:
    intent = await payments.get_intent(executor, order.payment_intent_id)
    if intent is None:
        return None
    return PaymentSummary(
        intent_id=intent.id,
        status=intent.status,
        currency=intent.currency,
        card_brand=intent.card_brand,
        card_last4=intent.card_last4,
        authorized=intent.amount_authorized,
        captured=intent.amount_captured,
        refunded=intent.amount_refunded,
    )


async def shipments_of(executor: Executor, order: OrderInfo) -> list[dict[str, Any]]:
    """What the registered shipment readers (fulfilment) know about this order's shipments."""
    found: list[dict[str, Any]] = []
    for reader in shipment_readers:
        found.extend(await reader(executor, order))
    return found


# -- placing an order ------------------------------------------------------------------------------


_NEW_ORDER: dict[str, Insert] = {}


def _new_order_statement(dialect: str) -> Insert:
    """INSERT of an order that does nothing when it exists (built once per dialect)."""
    statement = _NEW_ORDER.get(dialect)
    if statement is None:
        ins = postgresql.insert(ORDERS) if dialect == "postgresql" else sqlite.insert(ORDERS)
        statement = ins.on_conflict_do_nothing()
        _NEW_ORDER[dialect] = statement
    return statement


async def _write_history(
    conn: AsyncConnection,
    order_id: str,
    entries: Sequence[tuple[int, str | None, str]],
    actor: str,
    reason: str | None,
    now: datetime,
) -> None:
    await conn.execute(
        insert(HISTORY),
        [
            {
                "id": new_id("oh"),
                "order_id": order_id,
                "seq": seq,
                "from_status": from_status,
                "to_status": to_status,
                "actor": actor,
                "reason": reason,
                "created_at": now,
            }
            for seq, from_status, to_status in entries
        ],
    )


async def _publish_status_changed(
    conn: AsyncConnection,
    order_id: str,
    user_id: str,
    version: int,
    from_status: str | None,
    to_status: str,
    actor: str,
    reason: str | None,
) -> None:
    await events.publish(
        conn,
        ORDER_STATUS_CHANGED,
        order_id,
        _status_changed_payload(order_id, user_id, version, from_status, to_status, actor, reason),
    )


def _status_changed_payload(
    order_id: str,
    user_id: str,
    version: int,
    from_status: str | None,
    to_status: str,
    actor: str,
    reason: str | None,
) -> dict[str, Any]:
    return {
        "order_id": order_id,
        "user_id": user_id,
        "version": version,
        "from": from_status,
        "to": to_status,
        "actor": actor,
        "reason": reason,
    }


async def create_order(conn: AsyncConnection, draft: OrderDraft) -> OrderInfo:
    """Place the paid order the checkout saga built, in the caller's transaction.

    Writes the order (status ``paid``, history ``pending`` then ``pending → paid``), its lines,
    and the events ``OrderPlaced`` (order_id, user_id, email, total, currency,
    lines[variant_id, product_id, sku, quantity]) plus one ``OrderStatusChanged`` per
    transition. Idempotent: when the order id exists already, that order is returned unchanged
    and nothing is written. A different order for the same checkout is a 409 ``order_exists``.
    """
    _check_draft(draft)
    now = utcnow()
    email = draft.email.strip().lower()
    values: dict[str, Any] = {
        "id": draft.id,
        "checkout_id": draft.checkout_id,
        "user_id": draft.user_id,
        "email": email,
        "status": "paid",
        "previous_status": "pending",
        "version": 2,
        "currency": draft.currency,
        "subtotal": draft.subtotal,
        "shipping": draft.shipping,
        "discount": draft.discount,
        "tax": draft.tax,
        "total": draft.total,
        "refunded_total": 0,
        "units_shipped": 0,
        "shipping_address": dict(draft.shipping_address),
        "shipping_method": draft.shipping_method,
        "promo_code": draft.promo_code,
        "payment_intent_id": draft.payment_intent_id,
        "stock_returned_at": None,
        "payment_released_at": None,
        "created_at": now,
        "updated_at": now,
    }
    # No read first: the insert itself tells whether the order exists (a repeated call, or a
    # concurrent one PostgreSQL made this insert wait for).
    inserted = await conn.execute(_new_order_statement(conn.dialect.name), values)
    if inserted.rowcount != 1:
        existing = await get_order(conn, draft.id)
        if existing is not None:
            return existing
        raise Problem(
            409,
            "order_exists",
            "This checkout has already placed a different order",
            checkout_id=draft.checkout_id,
        )
    lines: list[dict[str, Any]] = [
        {
            "id": new_id("ol"),
            "order_id": draft.id,
            "position": position,
            "variant_id": line.variant_id,
            "product_id": line.product_id,
            "sku": line.sku,
            "title": line.title,
            "options": dict(line.options),
            "quantity": line.quantity,
            "unit_price": line.unit_price,
            "subtotal": line.subtotal,
            "discount": line.discount,
            "tax": line.tax,
            "total": line.total,
            "quantity_shipped": 0,
            "quantity_returned": 0,
        }
        for position, line in enumerate(draft.lines, start=1)
    ]
    await conn.execute(insert(LINES), lines)
    actor = f"checkout:{draft.checkout_id}"[:MAX_ACTOR]
    history = [(1, None, "pending"), (2, "pending", "paid")]
    await _write_history(conn, draft.id, history, actor, None, now)
    placed = {
        "order_id": draft.id,
        "user_id": draft.user_id,
        "email": email,
        "total": draft.total,
        "currency": draft.currency,
        "lines": [
            {
                "variant_id": line.variant_id,
                "product_id": line.product_id,
                "sku": line.sku,
                "quantity": line.quantity,
            }
            for line in draft.lines
        ],
    }
    # The three events in one statement, in this order (the outbox keeps insertion order).
    await events.publish_many(
        conn,
        [
            (ORDER_PLACED, draft.id, placed),
            *(
                (
                    ORDER_STATUS_CHANGED,
                    draft.id,
                    _status_changed_payload(
                        draft.id, draft.user_id, seq, from_status, to_status, actor, None
                    ),
                )
                for seq, from_status, to_status in history
            ),
        ],
    )
    # What was written is the answer: no need to read it back.
    return OrderInfo(
        **{k: v for k, v in values.items() if k != "previous_status"},
        lines=tuple(
            OrderLineInfo(**{k: v for k, v in row.items() if k != "order_id"}) for row in lines
        ),
        history=tuple(
            HistoryEntry(seq, from_status, to_status, actor, None, now)
            for seq, from_status, to_status in history
        ),
    )


# -- transitions -----------------------------------------------------------------------------------


def invalid_transition(from_status: str, to_status: str, detail: str | None = None) -> Problem:
    extra: dict[str, Any] = {
        "from": from_status,
        "to": to_status,
        "allowed": sorted(TRANSITIONS.get(from_status, frozenset())),
    }
    return Problem(
        409,
        "invalid_transition",
        detail or f"An order cannot go from {from_status} to {to_status}",
        title="Invalid transition",
        **extra,
    )


async def _refusal(
    conn: AsyncConnection, order_id: str, to_status: str, expected_from: frozenset[str] | None
) -> Problem:
    row = await _order_row(conn, order_id)
    if row is None:
        return not_found("Order", order_id)
    status = row.status
    if to_status == "cancelled" and status in CANCELLABLE and row.units_shipped > 0:
        return invalid_transition(
            status, to_status, "Items of this order have shipped; it can no longer be cancelled"
        )
    if expected_from is not None and can_transition(status, to_status):
        expected = ", ".join(sorted(expected_from)) or "nothing"
        return invalid_transition(
            status, to_status, f"The order is {status}; this needs it to be {expected}"
        )
    return invalid_transition(status, to_status)


async def transition(
    conn: AsyncConnection,
    order_id: str,
    to_status: str,
    *,
    actor: str,
    reason: str | None = None,
    expected_from: Collection[str] | None = None,
) -> OrderInfo:
    """Move the order to ``to_status`` if :data:`TRANSITIONS` allows it from its current status
    (and that status is in ``expected_from`` when given).

    One conditional ``UPDATE``; the row count decides. The winner writes the history row and an
    ``OrderStatusChanged`` event in the caller's transaction. Otherwise: 404 ``not_found`` for an
    unknown order, 409 ``invalid_transition`` (with ``from``, ``to``, ``allowed``).
    Cancelling also requires that nothing has shipped.
    """
    check_status(to_status, "to")
    _check_actor(actor)
    reason = _check_reason(reason)
    expected = frozenset(expected_from) if expected_from is not None else None
    sources = allowed_from(to_status)
    if expected is not None:
        sources &= expected
    row: Row[Any] | None = None
    now = utcnow()
    if sources:
        o = ORDERS.c
        where = [o.id == order_id, o.status.in_(sorted(sources))]
        if to_status == "cancelled":
            where.append(o.units_shipped == 0)
        # SET expressions see the row as it was: previous_status receives the old status.
        row = (
            await conn.execute(
                update(ORDERS)
                .where(*where)
                .values(
                    previous_status=o.status,
                    status=to_status,
                    version=o.version + 1,
                    updated_at=now,
                )
                .returning(o.user_id, o.previous_status, o.version)
            )
        ).first()
    if row is None:
        raise await _refusal(conn, order_id, to_status, expected)
    from_status: str = row.previous_status
    await _write_history(
        conn, order_id, [(row.version, from_status, to_status)], actor, reason, now
    )
    await _publish_status_changed(
        conn, order_id, row.user_id, row.version, from_status, to_status, actor, reason
    )
    log.info("order %s: %s -> %s by %s", order_id, from_status, to_status, actor)
    order = await get_order(conn, order_id)
    assert order is not None
    return order


# -- line counters (fulfilment and returns call these) ---------------------------------------------


def _sum_items(items: Iterable[tuple[str, int]]) -> dict[str, int]:
    wanted: dict[str, int] = defaultdict(int)
    for i, (line_id, quantity) in enumerate(items):
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
            raise validation_problem(f"items[{i}].quantity", "must be a positive whole number")
        wanted[line_id] += quantity
    if not wanted:
        raise validation_problem("items", "must name at least one line")
    return dict(wanted)


async def _touch_order(
    conn: AsyncConnection, order_id: str, statuses: frozenset[str], **values: Any
) -> None:
    """Lock the order row (a conditional update) while it is in one of ``statuses``."""
    o = ORDERS.c
    done = await conn.execute(
        update(ORDERS)
        .where(o.id == order_id, o.status.in_(sorted(statuses)))
        .values(updated_at=utcnow(), **values)
    )
    if done.rowcount == 1:
        return
    row = await _order_row(conn, order_id)
    if row is None:
        raise not_found("Order", order_id)
    raise Problem(
        409,
        "invalid_order_state",
        f"The order is {row.status}; this needs it to be one of {', '.join(sorted(statuses))}",
        status_now=row.status,
    )


async def _bump_lines(
    conn: AsyncConnection, order_id: str, wanted: dict[str, int], column: str, limit: str
) -> None:
    line = LINES.c
    for line_id, quantity in sorted(wanted.items()):
        counter = line[column]
        done = await conn.execute(
            update(LINES)
            .where(
                line.id == line_id,
                line.order_id == order_id,
                counter + quantity <= line[limit],
            )
            .values({column: counter + quantity})
        )
        if done.rowcount != 1:
            exists = await conn.scalar(
                select(func.count()).where(line.id == line_id, line.order_id == order_id)
            )
            if not exists:
                raise validation_problem("items", f"the order has no line {line_id!r}")
            raise Problem(
                409,
                "quantity_exceeded",
                f"Line {line_id} cannot take {quantity} more: {column} may not exceed {limit}",
                line_id=line_id,
            )


async def record_shipped(
    conn: AsyncConnection, order_id: str, items: Sequence[tuple[str, int]]
) -> OrderInfo:
    """Count ``(line_id, quantity)`` units as shipped (never above the line's quantity).

    The order must be paid, fulfilling or shipped; the order row is updated first (its
    ``units_shipped``), which serialises this with a concurrent cancellation. All or nothing:
    409 ``quantity_exceeded`` / ``invalid_order_state`` leave every counter as it was.
    """
    wanted = _sum_items(items)
    async with conn.begin_nested():
        await _touch_order(
            conn,
            order_id,
            SHIPPABLE,
            units_shipped=ORDERS.c.units_shipped + sum(wanted.values()),
        )
        await _bump_lines(conn, order_id, wanted, "quantity_shipped", "quantity")
    order = await get_order(conn, order_id)
    assert order is not None
    return order


async def record_returned(
    conn: AsyncConnection, order_id: str, items: Sequence[tuple[str, int]]
) -> OrderInfo:
    """Count ``(line_id, quantity)`` units as returned (never above what shipped). All or
    nothing, like :func:`record_shipped`."""
    wanted = _sum_items(items)
    async with conn.begin_nested():
        await _touch_order(conn, order_id, RETURNABLE)
        await _bump_lines(conn, order_id, wanted, "quantity_returned", "quantity_shipped")
    order = await get_order(conn, order_id)
    assert order is not None
    return order


async def record_refund(conn: AsyncConnection, order_id: str, amount: int) -> OrderInfo:
    """Add ``amount`` to the order's ``refunded_total`` (returns' refunds), never beyond its
    total: 409 ``refund_exceeds_total``."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise validation_problem("amount", "must be a positive amount in minor units")
    o = ORDERS.c
    done = await conn.execute(
        update(ORDERS)
        .where(o.id == order_id, o.refunded_total + amount <= o.total)
        .values(refunded_total=o.refunded_total + amount, updated_at=utcnow())
    )
    if done.rowcount != 1:
        if await _order_row(conn, order_id) is None:
            raise not_found("Order", order_id)
        raise Problem(409, "refund_exceeds_total", "Refunds would exceed the order's total")
    order = await get_order(conn, order_id)
    assert order is not None
    return order


# -- cancellation ----------------------------------------------------------------------------------


async def return_stock(conn: AsyncConnection, order_id: str) -> int:
    """Put a cancelled order's goods back on the shelf, once; returns the units restocked.

    The marker is set by a conditional update in the caller's transaction, together with the
    restocks, so a second call (a concurrent one, or the worker) restocks nothing.
    """
    o = ORDERS.c
    marked = (
        await conn.execute(
            update(ORDERS)
            .where(o.id == order_id, o.status == "cancelled", o.stock_returned_at.is_(None))
            .values(stock_returned_at=utcnow())
            .returning(o.checkout_id)
        )
    ).first()
    if marked is None:
        return 0
    held = await inventory.list_reservations(
        conn, state="committed", owner=marked.checkout_id, limit=10_000
    )
    # Stock rows in one order for every caller, so concurrent restocks cannot deadlock.
    for r in sorted(held, key=lambda r: (r.variant_id, r.warehouse_id)):
        await inventory.restock(
            conn, r.variant_id, r.warehouse_code, r.quantity, reference=order_id
        )
    units = sum(r.quantity for r in held)
    log.info("order %s: %d units back in stock", order_id, units)
    return units


async def _refund_made_for(conn: AsyncConnection, intent_id: str, key: str) -> int | None:
    """The amount of this cancellation's refund if one was already started (a retry must send
    the very same request)."""
    for event in await payments.intent_events(conn, intent_id):
        if event.operation == "refund" and event.idempotency_key == key:
            return event.amount
    return None


async def _give_money_back(
    db: Database, provider: PaymentProvider, intent_id: str, key: str
) -> tuple[bool, int]:
    """Void, or refund what was captured. Returns (done, amount refunded by this key)."""
    for _ in range(2):
        async with db.connect() as conn:
            intent = await payments.get_intent(conn, intent_id)
            started = await _refund_made_for(conn, intent_id, key) if intent else None
        if intent is None:
            log.warning("payment intent %s is unknown: nothing to give back", intent_id)
            return True, 0
        if started is None and intent.amount_captured == 0:
            try:
                outcome = await payments.void(db, provider, intent_id, key)
            except Problem as exc:
                if exc.code == "payment_already_captured":
                    continue  # captured meanwhile: refund it instead
                raise
            return outcome.ok, 0
        amount = started if started is not None else intent.net_paid
        if amount <= 0:
            return True, 0
        outcome = await payments.refund(db, provider, intent_id, amount, key)
        return outcome.ok, amount if outcome.ok else 0
    return False, 0


async def release_payment(db: Database, provider: PaymentProvider, order_id: str) -> bool:
    """Give a cancelled order's money back (void or refund), once. True when done.

    Runs outside any transaction: it calls the payment provider. Not finishing (a timeout, the
    provider down, a refused request) is logged and left for ``orders.finish_cancellations``.
    """
    async with db.connect() as conn:
        row = await _order_row(conn, order_id)
    if row is None:
        raise not_found("Order", order_id)
    if row.status != "cancelled" or row.payment_released_at is not None:
        return row.payment_released_at is not None
    key = cancel_key(order_id)
    try:
        done, refunded = await _give_money_back(db, provider, row.payment_intent_id, key)
    except Problem as exc:
        log.warning("order %s: giving the payment back was refused: %s", order_id, exc.body())
        return False
    if not done:
        log.warning("order %s: the payment is not released yet; the worker will retry", order_id)
        return False
    o = ORDERS.c
    async with db.connect() as conn:
        await conn.execute(
            update(ORDERS)
            .where(o.id == order_id, o.payment_released_at.is_(None))
            .values(payment_released_at=utcnow(), refunded_total=o.refunded_total + refunded)
        )
    log.info("order %s: payment released (refunded %d)", order_id, refunded)
    return True


async def cancel_order(
    db: Database,
    provider: PaymentProvider,
    order_id: str,
    *,
    actor: str,
    user_id: str | None = None,
    reason: str | None = None,
) -> OrderInfo:
    """Cancel an order that has not shipped: state first, with the stock back, then the money.

    ``user_id``: the customer asking (someone else's order is a 404); None for staff.
    409 ``invalid_transition`` when the order is past cancelling (or another cancel won).
    """
    _check_actor(actor)
    reason = _check_reason(reason)

    async def cancel(conn: AsyncConnection) -> None:
        row = await _order_row(conn, order_id)
        if row is None or (user_id is not None and row.user_id != user_id):
            raise not_found("Order", order_id)
        await transition(
            conn, order_id, "cancelled", actor=actor, reason=reason, expected_from=CANCELLABLE
        )
        await return_stock(conn, order_id)

    await inventory.in_transaction(db, cancel)
    await release_payment(db, provider, order_id)
    async with db.connect() as conn:
        order = await get_order(conn, order_id)
    assert order is not None
    return order


async def finish_cancellations(
    db: Database,
    provider: PaymentProvider,
    *,
    older_than: datetime | None = None,
    limit: int = 100,
) -> int:
    """Finish cancelled orders whose stock or money step is not done; returns how many are now
    complete. ``older_than`` leaves alone orders a live request may still be finishing."""
    o = ORDERS.c
    query = select(o.id).where(
        o.status == "cancelled",
        or_(o.stock_returned_at.is_(None), o.payment_released_at.is_(None)),
    )
    if older_than is not None:
        query = query.where(o.updated_at < older_than)
    async with db.connect() as conn:
        ids = list((await conn.scalars(query.order_by(o.updated_at, o.id).limit(limit))).all())
    finished = 0
    for order_id in ids:
        try:
            await inventory.in_transaction(db, partial(return_stock, order_id=order_id))
            if await release_payment(db, provider, order_id):
                finished += 1
        except Exception:
            log.exception("order %s: finishing the cancellation failed; will retry", order_id)
    return finished


# -- listings --------------------------------------------------------------------------------------

MAX_PAGE = 100


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="orders-cursor")


def _invalid_cursor() -> Problem:
    return Problem(400, "invalid_cursor", "The cursor is invalid or was not issued for this list")


def encode_cursor(secret_key: str, scope: str, created_at: datetime, order_id: str) -> str:
    return str(
        _serializer(secret_key).dumps({"s": scope, "k": created_at.isoformat(), "i": order_id})
    )


def decode_cursor(secret_key: str, token: str, scope: str) -> tuple[datetime, str]:
    """The (created_at, id) of the last order of the previous page, or 400 ``invalid_cursor``."""
    try:
        data = _serializer(secret_key).loads(token)
    except BadSignature as exc:
        raise _invalid_cursor() from exc
    if (
        not isinstance(data, dict)
        or data.get("s") != scope
        or not isinstance(data.get("i"), str)
        or not isinstance(data.get("k"), str)
    ):
        raise _invalid_cursor()
    try:
        when = datetime.fromisoformat(data["k"])
    except ValueError as exc:
        raise _invalid_cursor() from exc
    if when.tzinfo is None:
        raise _invalid_cursor()
    return when, data["i"]


def _summary_select() -> Select[Any]:
    o = ORDERS.c
    items = (
        select(func.coalesce(func.sum(LINES.c.quantity), 0))
        .where(LINES.c.order_id == o.id)
        .scalar_subquery()
    )
    return select(
        o.id,
        o.user_id,
        o.email,
        o.status,
        o.currency,
        o.total,
        o.refunded_total,
        o.created_at,
        o.updated_at,
        items.label("item_count"),
    )


async def _page(
    executor: Executor,
    query: Select[Any],
    *,
    scope: str,
    secret_key: str,
    cursor: str | None,
    limit: int,
) -> OrderPage:
    """Newest first, keyset on (created_at, id): orders placed while someone pages appear
    before the cursor, so the pages after it never repeat or skip an order."""
    if not 1 <= limit <= MAX_PAGE:
        raise validation_problem("limit", f"must be between 1 and {MAX_PAGE}")
    o = ORDERS.c
    if cursor is not None:
        when, last_id = decode_cursor(secret_key, cursor, scope)
        query = query.where(or_(o.created_at < when, and_(o.created_at == when, o.id < last_id)))
    rows = (
        await executor.execute(query.order_by(o.created_at.desc(), o.id.desc()).limit(limit + 1))
    ).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor(secret_key, scope, rows[-1].created_at, rows[-1].id)
    items = [
        OrderSummary(
            id=r.id,
            user_id=r.user_id,
            email=r.email,
            status=r.status,
            currency=r.currency,
            total=r.total,
            refunded_total=r.refunded_total,
            item_count=int(r.item_count),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )
        for r in rows
    ]
    return OrderPage(items, next_cursor)


async def customer_orders(
    executor: Executor,
    user_id: str,
    *,
    secret_key: str,
    cursor: str | None = None,
    limit: int = 20,
) -> OrderPage:
    """A customer's own orders, newest first, in keyset pages."""
    query = _summary_select().where(ORDERS.c.user_id == user_id)
    return await _page(
        executor, query, scope="customer", secret_key=secret_key, cursor=cursor, limit=limit
    )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def search_orders(
    executor: Executor,
    filters: OrderFilters,
    *,
    secret_key: str,
    cursor: str | None = None,
    limit: int = 50,
) -> OrderPage:
    """Staff search by status, customer e-mail (exact, case-insensitive) and creation time."""
    o = ORDERS.c
    query = _summary_select()
    if filters.status is not None:
        query = query.where(o.status == check_status(filters.status))
    if filters.email is not None:
        query = query.where(o.email == filters.email.strip().lower())
    start = _as_utc(filters.created_from) if filters.created_from else None
    end = _as_utc(filters.created_to) if filters.created_to else None
    if start is not None and end is not None and end <= start:
        raise validation_problem("created_to", "must be after created_from")
    if start is not None:
        query = query.where(o.created_at >= start)
    if end is not None:
        query = query.where(o.created_at < end)
    return await _page(
        executor, query, scope="staff", secret_key=secret_key, cursor=cursor, limit=limit
    )


# -- for tests and the back office -----------------------------------------------------------------


async def count_by_status(executor: Executor) -> dict[str, int]:
    rows = await executor.execute(select(ORDERS.c.status, func.count()).group_by(ORDERS.c.status))
    return {r[0]: int(r[1]) for r in rows}


# -- refunds after delivery (returns) --------------------------------------------------------------


async def refund_order(
    db: Database,
    provider: PaymentProvider,
    order_id: str,
    amount: int,
    key: str,
    *,
    record: Callable[[AsyncConnection], Awaitable[bool]],
) -> bool:
    """Give ``amount`` of an order's captured payment back, once per ``key``, and count it in
    the order's ``refunded_total``. True when done; False while the provider's answer is
    unknown (call again with the same key: it is never refunded twice).

    The same refund path as a cancellation's money step: the provider is called outside any
    transaction with the caller's idempotency key, and a retry re-sends exactly the refund that
    was started under it (:func:`_refund_made_for`). Then, in one transaction, ``record(conn)``
    (the caller's own conditional marker, True only for the call that records this refund) and
    :func:`record_refund`. Refused before the provider is called: 409 ``refund_exceeds_total``,
    422 ``refund_exceeds_captured``; a refusal by the provider is a 402 ``refund_failed``.
    """
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise validation_problem("amount", "must be a positive amount in minor units")
    async with db.connect() as conn:
        row = await _order_row(conn, order_id)
        if row is None:
            raise not_found("Order", order_id)
        started = (
            await _refund_made_for(conn, row.payment_intent_id, key)
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
    async with db.connect() as conn:
        if await record(conn):
            await record_refund(conn, order_id, amount)
            log.info("order %s: refunded %d (%s)", order_id, amount, key)
    return True


# -- the back office dashboard ---------------------------------------------------------------------

NOT_SOLD: frozenset[str] = frozenset({"pending", "payment_failed", "cancelled"})
"""Orders that bring no revenue: never paid, or cancelled (their money went back)."""


@dataclass(frozen=True, slots=True)
class SalesFigure:
    currency: str
    orders: int
    revenue: int  # the orders' totals less what was refunded on them, in minor units


async def sales_between(executor: Executor, start: datetime, end: datetime) -> list[SalesFigure]:
    """Orders placed in ``[start, end)`` and their revenue, per currency (by currency code).

    Counted: every order that was paid and not cancelled, whatever happened after (shipped,
    returned...); its revenue is its total less its refunds. Amounts of different currencies
    are never added together.
    """
    o = ORDERS.c
    rows = await executor.execute(
        select(o.currency, func.count(), func.coalesce(func.sum(o.total - o.refunded_total), 0))
        .where(
            o.created_at >= _as_utc(start),
            o.created_at < _as_utc(end),
            o.status.not_in(sorted(NOT_SOLD)),
        )
        .group_by(o.currency)
        .order_by(o.currency)
    )
    return [SalesFigure(r[0], int(r[1]), int(r[2])) for r in rows]
