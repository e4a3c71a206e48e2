"""Orders as rows of a CSV file: one row per order line, the order's own figures repeated on
each of its lines, amounts as decimal strings in the order's currency.

Columns, in order:

``order_id``, ``order_number`` (the number the shop shows and the shopper quotes: today the
order's id), ``placed_at`` (ISO 8601, UTC), ``status``, ``email``, ``currency``,
``line_position`` (1, 2… within the order), ``sku``, ``title``, ``options`` (``name: value``
pairs joined by ``; ``), ``quantity``, ``unit_price``, ``line_subtotal``, ``line_discount``,
``line_tax``, ``line_total``, ``order_subtotal``, ``order_shipping``, ``order_discount``,
``order_tax``, ``order_total``, ``order_refunded``.

Read in pages by order id (ids grow with time), so a caller writes a large shop's orders in
short transactions without holding them all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select

from mercato.db import UnitOfWork
from mercato.money import format_minor
from mercato.orders.queries import LINES, ORDERS

EXPORT_COLUMNS: tuple[str, ...] = (
    "order_id",
    "order_number",
    "placed_at",
    "status",
    "email",
    "currency",
    "line_position",
    "sku",
    "title",
    "options",
    "quantity",
    "unit_price",
    "line_subtotal",
    "line_discount",
    "line_tax",
    "line_total",
    "order_subtotal",
    "order_shipping",
    "order_discount",
    "order_tax",
    "order_total",
    "order_refunded",
)


async def export_order_rows(
    uow: UnitOfWork, *, after: str | None = None, limit: int = 500
) -> tuple[list[dict[str, str]], str | None]:
    """The rows of up to ``limit`` orders whose id comes after ``after`` (oldest first), and
    the id to continue after (None once there are no more)."""
    query = select(ORDERS).order_by(ORDERS.c.id).limit(limit)
    if after is not None:
        query = query.where(ORDERS.c.id > after)
    orders = list(await uow.execute(query))
    if not orders:
        return [], None
    lines = await uow.execute(
        select(LINES)
        .where(LINES.c.order_id.in_([o.id for o in orders]))
        .order_by(LINES.c.order_id, LINES.c.position)
    )
    by_order: dict[str, list[Row[Any]]] = {o.id: [] for o in orders}
    for line in lines:
        by_order[line.order_id].append(line)
    rows: list[dict[str, str]] = []
    for o in orders:
        order_cells = {
            "order_id": o.id,
            "order_number": o.id,
            "placed_at": o.created_at.isoformat(),
            "status": o.status,
            "email": o.email,
            "currency": o.currency,
            "order_subtotal": format_minor(o.subtotal, o.currency),
            "order_shipping": format_minor(o.shipping, o.currency),
            "order_discount": format_minor(o.discount, o.currency),
            "order_tax": format_minor(o.tax, o.currency),
            "order_total": format_minor(o.total, o.currency),
            "order_refunded": format_minor(o.refunded_total, o.currency),
        }
        for number, line in enumerate(by_order[o.id], start=1):
            rows.append(
                {
                    **order_cells,
                    "line_position": str(number),
                    "sku": line.sku,
                    "title": line.title,
                    "options": "; ".join(f"{k}: {v}" for k, v in (line.options or {}).items()),
                    "quantity": str(line.quantity),
                    "unit_price": format_minor(line.unit_price, o.currency),
                    "line_subtotal": format_minor(line.subtotal, o.currency),
                    "line_discount": format_minor(line.discount, o.currency),
                    "line_tax": format_minor(line.tax, o.currency),
                    "line_total": format_minor(line.total, o.currency),
                }
            )
    return rows, (orders[-1].id if len(orders) == limit else None)
