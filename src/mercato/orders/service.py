"""The orders module's public face: what other modules and the adapters call.

The rules live in files by family: the state machine as data (:mod:`.machine`), placing an order
and moving it (:mod:`.lifecycle`), reading (:mod:`.queries`), giving money back
(:mod:`.refunds`), the cancellation workflow (:mod:`.cancellation`) and the rows of the CSV
export (:mod:`.export`). Everything here takes the caller's unit of work first, except what
starts or resumes a workflow (it takes the runtime: the workflow runs its steps in
transactions of its own).

Shipments live in the fulfilment module's tables; ``modules.wire`` registers its reader in
:data:`shipment_readers`, so the order page can show them without this module knowing their
shape (orders may not import fulfilment: fulfilment imports orders).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from mercato.db import UnitOfWork
from mercato.orders.cancellation import (
    CANCELLATION,
    ORDER_PAYMENT_RELEASED,
    RELEASE_PENDING,
    CancellationState,
    cancel_order,
    change_status,
    finish_cancellation,
    release_payment,
    take_over,
)
from mercato.orders.export import EXPORT_COLUMNS, export_order_rows
from mercato.orders.guests import (
    FoundOrder,
    LookupThrottle,
    OrderCaller,
    actor_of,
    cancel_order_for,
    join_guest_orders,
    lookup_order,
    may_act_on,
    no_such_order,
    order_access_token,
    order_for,
)
from mercato.orders.lifecycle import (
    MAX_ACTOR,
    MAX_REASON,
    ORDER_PLACED,
    ORDER_STATUS_CHANGED,
    OrderDraft,
    OrderLineDraft,
    OrderPartDraft,
    create_order,
    record_refund,
    record_returned,
    record_shipped,
    transition,
)
from mercato.orders.machine import (
    BORN,
    CANCELLABLE,
    FINAL,
    NOT_SOLD,
    RETURNABLE,
    SHIPPABLE,
    STATUSES,
    TRANSITIONS,
    OrderActions,
    allowed_actions,
    allowed_from,
    can_transition,
    check_status,
    invalid_transition,
)
from mercato.orders.models import HOUSE_SELLER
from mercato.orders.queries import (
    CANCELLATION_WORKFLOW,
    HISTORY,
    LINES,
    MAX_PAGE,
    ORDERS,
    DailySales,
    HistoryEntry,
    LinePart,
    OrderFilters,
    OrderInfo,
    OrderLineInfo,
    OrderPage,
    OrderPartInfo,
    OrderSummary,
    PaymentSummary,
    ProductSales,
    Purchase,
    SalesFigure,
    SellerPart,
    SoldBasket,
    count_by_status,
    customer_orders,
    customer_product_lines,
    customer_purchases,
    daily_sales,
    decode_cursor,
    encode_cursor,
    get_customer_order,
    get_order,
    get_order_part,
    line_parts,
    orders_placed_since,
    payment_summary,
    sales_between,
    search_orders,
    seller_lines_query,
    seller_part_ids,
    seller_parts_since,
    sold_baskets,
    top_products_between,
)
from mercato.orders.refunds import cancel_key, refund_payment
from mercato.orders.sales_rank import SALES_RANKS_CHANGED, ProductRank, sales_ranks, top_sellers
from mercato.orders.sales_rank import refresh as refresh_sales_ranks

ShipmentReader = Callable[[UnitOfWork, OrderInfo], Awaitable[list[dict[str, Any]]]]
shipment_readers: list[ShipmentReader] = []
SellerNameReader = Callable[[UnitOfWork, Collection[str]], Awaitable[dict[str, str]]]
seller_name_readers: list[SellerNameReader] = []
"""Who the parts' sellers are (the marketplace knows; ``modules.wire`` registers it)."""


async def seller_names_of(uow: UnitOfWork, order: OrderInfo) -> dict[str, str]:
    """The shop name of each seller with a part in this order, as far as the readers know."""
    ids = {p.seller_id for p in order.parts}
    found: dict[str, str] = {}
    for reader in seller_name_readers:
        found.update(await reader(uow, ids))
    return found


async def shipments_of(uow: UnitOfWork, order: OrderInfo) -> list[dict[str, Any]]:
    """What the registered shipment readers (fulfilment) know about this order's shipments."""
    found: list[dict[str, Any]] = []
    for reader in shipment_readers:
        found.extend(await reader(uow, order))
    return found


@dataclass(frozen=True, slots=True)
class OrderDetail:
    """One order as its page shows it: with its payment and its shipments."""

    order: OrderInfo
    payment: PaymentSummary | None
    shipments: list[dict[str, Any]]
    seller_names: dict[str, str] = field(default_factory=dict)
    """Seller id → shop name, for the order's parts."""


async def order_detail(
    uow: UnitOfWork, order_id: str, *, user_id: str | None = None
) -> OrderDetail | None:
    """The order with its payment and shipments; None when it is unknown or (``user_id``
    given) someone else's."""
    order = (
        await get_order(uow, order_id)
        if user_id is None
        else await get_customer_order(uow, order_id, user_id)
    )
    if order is None:
        return None
    return await _detail_of(uow, order)


async def _detail_of(uow: UnitOfWork, order: OrderInfo) -> OrderDetail:
    return OrderDetail(
        order,
        await payment_summary(uow, order),
        await shipments_of(uow, order),
        await seller_names_of(uow, order),
    )


async def order_detail_for(
    uow: UnitOfWork, order_id: str, caller: OrderCaller, *, secret_key: str
) -> OrderDetail | None:
    """The order's page for whoever may see it (:func:`order_for`); None for anyone else."""
    order = await order_for(uow, order_id, caller, secret_key=secret_key)
    return None if order is None else await _detail_of(uow, order)


__all__ = [
    "BORN",
    "CANCELLABLE",
    "CANCELLATION",
    "CANCELLATION_WORKFLOW",
    "EXPORT_COLUMNS",
    "FINAL",
    "HISTORY",
    "HOUSE_SELLER",
    "LINES",
    "MAX_ACTOR",
    "MAX_PAGE",
    "MAX_REASON",
    "NOT_SOLD",
    "ORDERS",
    "ORDER_PAYMENT_RELEASED",
    "ORDER_PLACED",
    "ORDER_STATUS_CHANGED",
    "RELEASE_PENDING",
    "RETURNABLE",
    "SALES_RANKS_CHANGED",
    "SHIPPABLE",
    "STATUSES",
    "TRANSITIONS",
    "CancellationState",
    "DailySales",
    "FoundOrder",
    "HistoryEntry",
    "LinePart",
    "LookupThrottle",
    "OrderActions",
    "OrderCaller",
    "OrderDetail",
    "OrderDraft",
    "OrderFilters",
    "OrderInfo",
    "OrderLineDraft",
    "OrderLineInfo",
    "OrderPage",
    "OrderPartDraft",
    "OrderPartInfo",
    "OrderSummary",
    "PaymentSummary",
    "ProductRank",
    "ProductSales",
    "Purchase",
    "SalesFigure",
    "SellerNameReader",
    "SellerPart",
    "ShipmentReader",
    "SoldBasket",
    "actor_of",
    "allowed_actions",
    "allowed_from",
    "can_transition",
    "cancel_key",
    "cancel_order",
    "cancel_order_for",
    "change_status",
    "check_status",
    "count_by_status",
    "create_order",
    "customer_orders",
    "customer_product_lines",
    "customer_purchases",
    "daily_sales",
    "decode_cursor",
    "encode_cursor",
    "export_order_rows",
    "finish_cancellation",
    "get_customer_order",
    "get_order",
    "get_order_part",
    "invalid_transition",
    "join_guest_orders",
    "line_parts",
    "lookup_order",
    "may_act_on",
    "no_such_order",
    "order_access_token",
    "order_detail",
    "order_detail_for",
    "order_for",
    "orders_placed_since",
    "payment_summary",
    "record_refund",
    "record_returned",
    "record_shipped",
    "refresh_sales_ranks",
    "refund_payment",
    "release_payment",
    "sales_between",
    "sales_ranks",
    "search_orders",
    "seller_lines_query",
    "seller_name_readers",
    "seller_names_of",
    "seller_part_ids",
    "seller_parts_since",
    "shipment_readers",
    "shipments_of",
    "sold_baskets",
    "take_over",
    "top_products_between",
    "top_sellers",
    "transition",
]
