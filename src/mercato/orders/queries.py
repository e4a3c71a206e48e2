"""Reading orders: one order with its lines, history and payment, a customer's orders and the
staff search in keyset pages, and the back office's figures.

What a cancellation did (stock back, money back) lives on its workflow run, not on the order:
:func:`get_order` reads it from there for a cancelled order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Row, Select, Table, and_, func, or_, select

from mercato import workflows
from mercato.db import UnitOfWork
from mercato.orders.machine import NOT_SOLD, TRANSITIONS, can_cancel, check_status
from mercato.orders.models import HOUSE_SELLER, Order, OrderHistory, OrderLine, OrderPart
from mercato.payments import service as payments
from mercato.problems import Problem, validation_problem

ORDERS = cast(Table, Order.__table__)
LINES = cast(Table, OrderLine.__table__)
HISTORY = cast(Table, OrderHistory.__table__)
PARTS = cast(Table, OrderPart.__table__)

CANCELLATION_WORKFLOW = "orders.cancellation"
"""The workflow that cancels an order (:mod:`mercato.orders.cancellation`), keyed by order id."""


# -- what callers get ------------------------------------------------------------------------------


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
    seller_id: str = HOUSE_SELLER
    part_id: str | None = None


@dataclass(frozen=True, slots=True)
class OrderPartInfo:
    """One seller's part of an order: its share of the money (``shipping`` as the order's, its
    tax included; ``tax`` its lines' and its shipping's) and its lines' ids."""

    id: str
    order_id: str
    seller_id: str
    status: str
    subtotal: int
    discount: int
    shipping: int
    tax: int
    total: int
    handling_days: int
    created_at: datetime
    line_ids: tuple[str, ...] = ()


def _part_info(row: Row[Any], line_ids: Iterable[str] = ()) -> OrderPartInfo:
    return OrderPartInfo(
        id=row.id,
        order_id=row.order_id,
        seller_id=row.seller_id,
        status=row.status,
        subtotal=row.subtotal,
        discount=row.discount,
        shipping=row.shipping,
        tax=row.tax,
        total=row.total,
        handling_days=row.handling_days,
        created_at=row.created_at,
        line_ids=tuple(line_ids),
    )


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
    user_id: str | None
    """None for a guest's order (until its e-mail joins an account)."""
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
    """Cancelled orders: when the goods went back on the shelf (from the cancellation run)."""
    payment_released_at: datetime | None
    """Cancelled orders: when the money was given back (from the cancellation run)."""
    created_at: datetime
    updated_at: datetime
    lines: tuple[OrderLineInfo, ...] = ()
    history: tuple[HistoryEntry, ...] = ()
    parts: tuple[OrderPartInfo, ...] = ()
    """One per seller, the house's first (see :mod:`mercato.orders.models`)."""

    @property
    def can_cancel(self) -> bool:
        return can_cancel(self.status, self.units_shipped)

    @property
    def next_statuses(self) -> list[str]:
        return sorted(TRANSITIONS[self.status])


@dataclass(frozen=True, slots=True)
class OrderSummary:
    id: str
    user_id: str | None
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
        seller_id=row.seller_id,
        part_id=row.part_id,
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


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What an order's cancellation has done so far."""

    stock_returned_at: datetime | None = None
    payment_released_at: datetime | None = None


_NONE = Cancellation()


def _when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _order_info(
    row: Row[Any],
    lines: Iterable[OrderLineInfo],
    history: Iterable[HistoryEntry],
    cancellation: Cancellation,
    parts: Iterable[OrderPartInfo] = (),
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
        stock_returned_at=cancellation.stock_returned_at,
        payment_released_at=cancellation.payment_released_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
        lines=tuple(lines),
        history=tuple(history),
        parts=tuple(parts),
    )


async def order_row(uow: UnitOfWork, order_id: str) -> Row[Any] | None:
    return (await uow.execute(select(ORDERS).where(ORDERS.c.id == order_id))).first()


async def get_order(uow: UnitOfWork, order_id: str) -> OrderInfo | None:
    """The order with its lines (in checkout order) and its history (oldest first)."""
    row = await order_row(uow, order_id)
    if row is None:
        return None
    lines = await uow.execute(
        select(LINES).where(LINES.c.order_id == order_id).order_by(LINES.c.position)
    )
    history = await uow.execute(
        select(HISTORY).where(HISTORY.c.order_id == order_id).order_by(HISTORY.c.seq)
    )
    cancellation = await _cancellation(uow, order_id) if row.status == "cancelled" else _NONE
    infos = [_line_info(r) for r in lines]
    return _order_info(
        row, infos, map(_history_entry, history), cancellation, await _parts(uow, order_id, infos)
    )


async def _parts(
    uow: UnitOfWork, order_id: str, lines: Iterable[OrderLineInfo]
) -> list[OrderPartInfo]:
    rows = await uow.execute(select(PARTS).where(PARTS.c.order_id == order_id))
    by_part: dict[str, list[str]] = {}
    for line in lines:
        by_part.setdefault(line.part_id or "", []).append(line.id)
    parts = [_part_info(r, by_part.get(r.id, ())) for r in rows]
    return sorted(parts, key=lambda p: (p.seller_id != HOUSE_SELLER, p.seller_id))


async def get_order_part(uow: UnitOfWork, part_id: str) -> OrderPartInfo | None:
    row = (await uow.execute(select(PARTS).where(PARTS.c.id == part_id))).first()
    if row is None:
        return None
    ids = await uow.execute(
        select(LINES.c.id).where(LINES.c.part_id == part_id).order_by(LINES.c.position)
    )
    return _part_info(row, ids.scalars())


async def seller_part_ids(
    uow: UnitOfWork,
    seller_id: str | None,
    *,
    since: datetime | None = None,
    limit: int = 100,
    before: str | None = None,
) -> list[str]:
    """Ids of the order parts of ``seller_id`` (``None``: every seller's), newest first:
    ``limit`` of them older than the part ``before`` (by id), placed ``since`` when given."""
    query = select(PARTS.c.id).order_by(PARTS.c.id.desc()).limit(limit)
    if seller_id is not None:
        query = query.where(PARTS.c.seller_id == seller_id)
    if since is not None:
        query = query.where(PARTS.c.created_at >= since)
    if before is not None:
        query = query.where(PARTS.c.id < before)
    return [str(i) for i in (await uow.execute(query)).scalars()]


@dataclass(frozen=True, slots=True)
class LinePart:
    """Whose an order line is: its seller and the order part it belongs to."""

    order_line_id: str
    seller_id: str
    part_id: str | None


async def line_parts(uow: UnitOfWork, line_ids: Iterable[str]) -> dict[str, LinePart]:
    """Each known order line's seller and part, by line id (one query)."""
    wanted = sorted(set(line_ids))
    if not wanted:
        return {}
    rows = await uow.execute(
        select(LINES.c.id, LINES.c.seller_id, LINES.c.part_id).where(LINES.c.id.in_(wanted))
    )
    return {r.id: LinePart(r.id, r.seller_id, r.part_id) for r in rows}


def seller_lines_query(seller_id: str) -> Select[tuple[str]]:
    """The ids of ``seller_id``'s order lines, as a subquery for another module's filter (so
    that a seller's returns are paged in the database, without a copy of who sold what)."""
    return select(LINES.c.id).where(LINES.c.seller_id == seller_id)


@dataclass(frozen=True, slots=True)
class SellerPart:
    """One of a seller's order parts with what its performance needs of the order."""

    part: OrderPartInfo
    order_status: str
    user_id: str | None
    product_ids: frozenset[str]
    cancelled_by: str | None = None
    """Who moved the order to ``cancelled`` (its history's actor), when it was."""


async def seller_parts_since(uow: UnitOfWork, seller_id: str, since: datetime) -> list[SellerPart]:
    """Every part of ``seller_id`` placed since ``since``, oldest first (three queries)."""
    rows = (
        await uow.execute(
            select(PARTS, ORDERS.c.status.label("order_status"), ORDERS.c.user_id)
            .join(ORDERS, ORDERS.c.id == PARTS.c.order_id)
            .where(PARTS.c.seller_id == seller_id, PARTS.c.created_at >= since)
            .order_by(PARTS.c.created_at, PARTS.c.id)
        )
    ).all()
    lines: dict[str, list[tuple[str, str]]] = {}
    if rows:
        found = await uow.execute(
            select(LINES.c.part_id, LINES.c.id, LINES.c.product_id)
            .where(LINES.c.part_id.in_([r.id for r in rows]))
            .order_by(LINES.c.position)
        )
        for r in found:
            lines.setdefault(r.part_id, []).append((r.id, r.product_id))
    cancelled = [r.order_id for r in rows if r.order_status == "cancelled"]
    cancelled_by: dict[str, str] = {}
    if cancelled:
        moves = await uow.execute(
            select(HISTORY.c.order_id, HISTORY.c.actor).where(
                HISTORY.c.order_id.in_(cancelled), HISTORY.c.to_status == "cancelled"
            )
        )
        cancelled_by = {m.order_id: m.actor for m in moves}
    return [
        SellerPart(
            part=_part_info(r, [i for i, _ in lines.get(r.id, [])]),
            order_status=r.order_status,
            user_id=r.user_id,
            product_ids=frozenset(p for _, p in lines.get(r.id, [])),
            cancelled_by=cancelled_by.get(r.order_id),
        )
        for r in rows
    ]


async def _cancellation(uow: UnitOfWork, order_id: str) -> Cancellation:
    """How far the order's cancellation has got, from its run (none yet: an order moved to
    ``cancelled`` by a plain transition, until the worker takes its cancellation over)."""
    run = await workflows.find_run(uow, CANCELLATION_WORKFLOW, order_id)
    if run is None:
        return _NONE
    return Cancellation(
        _when(run.state.get("stock_returned_at")), _when(run.state.get("payment_released_at"))
    )


async def get_customer_order(uow: UnitOfWork, order_id: str, user_id: str) -> OrderInfo | None:
    """The order if it belongs to ``user_id``; None otherwise (callers answer 404 either way,
    so a customer cannot even learn that someone else's order exists)."""
    order = await get_order(uow, order_id)
    return order if order is not None and order.user_id == user_id else None


async def payment_summary(uow: UnitOfWork, order: OrderInfo) -> PaymentSummary | None:
    intent = await payments.get_intent(uow, order.payment_intent_id)
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
    uow: UnitOfWork,
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
        await uow.execute(query.order_by(o.created_at.desc(), o.id.desc()).limit(limit + 1))
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
    uow: UnitOfWork,
    user_id: str,
    *,
    secret_key: str,
    cursor: str | None = None,
    limit: int = 20,
) -> OrderPage:
    """A customer's own orders, newest first, in keyset pages."""
    query = _summary_select().where(ORDERS.c.user_id == user_id)
    return await _page(
        uow, query, scope="customer", secret_key=secret_key, cursor=cursor, limit=limit
    )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def search_orders(
    uow: UnitOfWork,
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
        raise validation_problem("created_to", "must be after created_from", code="invalid_range")
    if start is not None:
        query = query.where(o.created_at >= start)
    if end is not None:
        query = query.where(o.created_at < end)
    return await _page(uow, query, scope="staff", secret_key=secret_key, cursor=cursor, limit=limit)


# -- for tests and the back office -----------------------------------------------------------------


async def count_by_status(uow: UnitOfWork) -> dict[str, int]:
    rows = await uow.execute(select(ORDERS.c.status, func.count()).group_by(ORDERS.c.status))
    return {r[0]: int(r[1]) for r in rows}


# -- the back office dashboard ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SalesFigure:
    currency: str
    orders: int
    revenue: int  # the orders' totals less what was refunded on them, in minor units


async def sales_between(uow: UnitOfWork, start: datetime, end: datetime) -> list[SalesFigure]:
    """Orders placed in ``[start, end)`` and their revenue, per currency (by currency code).

    Counted: every order that was paid and not cancelled, whatever happened after (shipped,
    returned...); its revenue is its total less its refunds. Amounts of different currencies
    are never added together.
    """
    o = ORDERS.c
    rows = await uow.execute(
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


@dataclass(frozen=True, slots=True)
class DailySales:
    day: date
    currency: str
    orders: int
    revenue: int  # as in SalesFigure: totals less refunds, in minor units


def _utc_day(uow: UnitOfWork, column: Any) -> Any:
    # SQLite stores naive UTC text; PostgreSQL an aware timestamp, read here in UTC.
    if uow.is_sqlite:
        return func.date(column)
    return func.date(func.timezone("UTC", column))


async def daily_sales(uow: UnitOfWork, start: datetime, end: datetime) -> list[DailySales]:
    """:func:`sales_between` per UTC day of ``[start, end)`` and currency, days with no order
    left out, oldest day first."""
    o = ORDERS.c
    day = _utc_day(uow, o.created_at).label("day")
    rows = await uow.execute(
        select(
            day, o.currency, func.count(), func.coalesce(func.sum(o.total - o.refunded_total), 0)
        )
        .where(
            o.created_at >= _as_utc(start),
            o.created_at < _as_utc(end),
            o.status.not_in(sorted(NOT_SOLD)),
        )
        .group_by(day, o.currency)
        .order_by(day, o.currency)
    )
    return [
        DailySales(
            r[0] if isinstance(r[0], date) else date.fromisoformat(r[0]), r[1], int(r[2]), int(r[3])
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class ProductSales:
    product_id: str
    title: str
    units: int  # ordered less returned
    orders: int


async def top_products_between(
    uow: UnitOfWork, start: datetime, end: datetime, *, limit: int = 10
) -> list[ProductSales]:
    """The products that sold the most units in orders placed in ``[start, end)`` (not
    cancelled; returned units taken off), most first, ties by product id. The title is one of
    its lines' (what was sold, as it was called then: the greatest when they differ)."""
    o, line = ORDERS.c, LINES.c
    units = func.sum(line.quantity - line.quantity_returned)
    rows = await uow.execute(
        select(line.product_id, func.max(line.title), units, func.count(func.distinct(o.id)))
        .join(ORDERS, o.id == line.order_id)
        .where(
            o.created_at >= _as_utc(start),
            o.created_at < _as_utc(end),
            o.status.not_in(sorted(NOT_SOLD)),
        )
        .group_by(line.product_id)
        .having(units > 0)
        .order_by(units.desc(), line.product_id)
        .limit(limit)
    )
    return [ProductSales(r[0], r[1], int(r[2]), int(r[3])) for r in rows]


async def customer_product_lines(
    uow: UnitOfWork, user_id: str, product_id: str
) -> list[tuple[str, str]]:
    """(order id, line id) of every line of this product in the customer's orders, whatever
    became of them: what the fulfilment module checks deliveries against."""
    o, line = ORDERS.c, LINES.c
    rows = await uow.execute(
        select(o.id, line.id)
        .join(LINES, line.order_id == o.id)
        .where(o.user_id == user_id, line.product_id == product_id)
    )
    return [(str(order_id), str(line_id)) for order_id, line_id in rows]


@dataclass(frozen=True, slots=True)
class Purchase:
    """A product a customer bought and kept (some of the line's units were not returned)."""

    product_id: str
    placed_at: datetime


async def customer_purchases(uow: UnitOfWork, user_id: str, *, limit: int = 200) -> list[Purchase]:
    """The products of the customer's latest ``limit`` order lines that count as sold (the
    order not cancelled, not every unit returned), newest first: one indexed read, what a
    customer's tastes are told from."""
    o, line = ORDERS.c, LINES.c
    rows = await uow.execute(
        select(line.product_id, o.created_at)
        .join(LINES, line.order_id == o.id)
        .where(
            o.user_id == user_id,
            o.status.not_in(sorted(NOT_SOLD)),
            line.quantity > line.quantity_returned,
        )
        .order_by(o.created_at.desc(), o.id.desc(), line.id)
        .limit(limit)
    )
    return [Purchase(str(product_id), _as_utc(placed)) for product_id, placed in rows]


@dataclass(frozen=True, slots=True)
class SoldBasket:
    """An order's products as sold: what recommendations are built from."""

    order_id: str
    customer: str  # the account, else the e-mail a guest ordered with
    placed_at: datetime
    product_ids: frozenset[str]


BASKET_PAGE = 5000


async def sold_baskets(uow: UnitOfWork) -> list[SoldBasket]:
    """Every order that was paid and not cancelled, with the products of its lines that were
    not all returned (a returned unit says the customer did not want it), oldest first."""
    o, line = ORDERS.c, LINES.c
    query = (
        select(o.id, o.user_id, o.email, o.created_at, line.product_id)
        .join(LINES, line.order_id == o.id)
        .where(o.status.not_in(sorted(NOT_SOLD)), line.quantity > line.quantity_returned)
        .order_by(o.created_at, o.id)
    )
    found: dict[str, tuple[str, datetime, set[str]]] = {}
    for order_id, user_id, email, created_at, product_id in await uow.execute(query):
        entry = found.get(order_id)
        if entry is None:
            entry = found[order_id] = (user_id or f"guest:{email.lower()}", created_at, set())
        entry[2].add(product_id)
    return [
        SoldBasket(order_id, customer, placed, frozenset(products))
        for order_id, (customer, placed, products) in found.items()
    ]


async def orders_placed_since(uow: UnitOfWork, since: datetime | None) -> int:
    """How many orders were placed after ``since`` (all when None), whatever became of them:
    the cheap "has anything happened" check the recommendations' rebuild starts with."""
    query = select(func.count()).select_from(ORDERS)
    if since is not None:
        query = query.where(ORDERS.c.created_at > since)
    return int(await uow.scalar(query) or 0)
