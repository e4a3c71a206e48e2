"""What the orders API answers with: amounts as decimal strings, never floats."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field

from mercato.money import format_minor
from mercato.orders.service import STATUSES as ORDER_STATUSES
from mercato.orders.service import (
    HistoryEntry,
    OrderDetail,
    OrderInfo,
    OrderLineInfo,
    OrderPage,
    OrderPartInfo,
    OrderSummary,
    PaymentSummary,
)
from mercato.text import PlainText


class OrderLineOut(BaseModel):
    id: str
    variant_id: str
    product_id: str
    sku: str
    title: str
    options: dict[str, str]
    quantity: int
    unit_price: str
    subtotal: str
    discount: str
    tax: str
    total: str
    quantity_shipped: int
    quantity_returned: int

    @classmethod
    def of(cls, line: OrderLineInfo, currency: str) -> OrderLineOut:
        return cls(
            id=line.id,
            variant_id=line.variant_id,
            product_id=line.product_id,
            sku=line.sku,
            title=line.title,
            options=line.options,
            quantity=line.quantity,
            unit_price=format_minor(line.unit_price, currency),
            subtotal=format_minor(line.subtotal, currency),
            discount=format_minor(line.discount, currency),
            tax=format_minor(line.tax, currency),
            total=format_minor(line.total, currency),
            quantity_shipped=line.quantity_shipped,
            quantity_returned=line.quantity_returned,
        )


class TotalsOut(BaseModel):
    currency: str
    subtotal: str
    shipping: str
    discount: str
    tax: str
    total: str
    refunded: str

    @classmethod
    def of(cls, order: OrderInfo) -> TotalsOut:
        c = order.currency
        return cls(
            currency=c,
            subtotal=format_minor(order.subtotal, c),
            shipping=format_minor(order.shipping, c),
            discount=format_minor(order.discount, c),
            tax=format_minor(order.tax, c),
            total=format_minor(order.total, c),
            refunded=format_minor(order.refunded_total, c),
        )


class OrderPartOut(BaseModel):
    """One seller's part of the order: its lines, its shipping and its money (the parts add up
    to the order's totals)."""

    id: str
    seller_id: str
    seller_name: str | None = Field(description="The seller's shop name; null when unknown")
    status: str
    subtotal: str
    discount: str
    shipping: str
    tax: str
    total: str
    line_ids: list[str]

    @classmethod
    def of(cls, part: OrderPartInfo, currency: str, names: dict[str, str]) -> OrderPartOut:
        return cls(
            id=part.id,
            seller_id=part.seller_id,
            seller_name=names.get(part.seller_id),
            status=part.status,
            subtotal=format_minor(part.subtotal, currency),
            discount=format_minor(part.discount, currency),
            shipping=format_minor(part.shipping, currency),
            tax=format_minor(part.tax, currency),
            total=format_minor(part.total, currency),
            line_ids=list(part.line_ids),
        )


class PaymentOut(BaseModel):
    status: str
    card_brand: str | None
    card_last4: str | None
    currency: str
    authorized: str
    captured: str
    refunded: str

    @classmethod
    def of(cls, payment: PaymentSummary) -> PaymentOut:
        c = payment.currency
        return cls(
            status=payment.status,
            card_brand=payment.card_brand,
            card_last4=payment.card_last4,
            currency=c,
            authorized=format_minor(payment.authorized, c),
            captured=format_minor(payment.captured, c),
            refunded=format_minor(payment.refunded, c),
        )


class TimelineEntryOut(BaseModel):
    from_status: str | None
    to_status: str
    actor: str
    reason: str | None
    at: datetime

    @classmethod
    def of(cls, entry: HistoryEntry, *, staff: bool) -> TimelineEntryOut:
        # Customers see who acted by kind (customer, staff, checkout...), not internal ids.
        actor = entry.actor if staff else entry.actor.split(":", 1)[0]
        return cls(
            from_status=entry.from_status,
            to_status=entry.to_status,
            actor=actor,
            reason=entry.reason,
            at=entry.created_at,
        )


class CancellationOut(BaseModel):
    stock_returned: bool
    payment_released: bool


class OrderOut(BaseModel):
    id: str
    status: str
    email: str
    created_at: datetime
    updated_at: datetime
    totals: TotalsOut
    lines: list[OrderLineOut]
    parts: list[OrderPartOut] = Field(
        description="One per seller the order buys from, the shop's own first"
    )
    payment: PaymentOut | None
    shipping_address: dict[str, Any]
    shipping_method: str
    promo_code: str | None
    shipments: list[dict[str, Any]]
    timeline: list[TimelineEntryOut]
    can_cancel: bool
    cancellation: CancellationOut | None


class StaffOrderOut(OrderOut):
    user_id: str | None = Field(description="The customer; null for a guest's order")
    checkout_id: str
    payment_intent_id: str
    version: int
    next_statuses: list[str]


def _common(detail: OrderDetail, *, staff: bool) -> dict[str, Any]:
    order, payment, shipments = detail.order, detail.payment, detail.shipments
    cancellation = None
    if order.status == "cancelled":
        cancellation = CancellationOut(
            stock_returned=order.stock_returned_at is not None,
            payment_released=order.payment_released_at is not None,
        )
    return {
        "id": order.id,
        "status": order.status,
        "email": order.email,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "totals": TotalsOut.of(order),
        "lines": [OrderLineOut.of(line, order.currency) for line in order.lines],
        "parts": [OrderPartOut.of(p, order.currency, detail.seller_names) for p in order.parts],
        "payment": PaymentOut.of(payment) if payment is not None else None,
        "shipping_address": order.shipping_address,
        "shipping_method": order.shipping_method,
        "promo_code": order.promo_code,
        "shipments": shipments,
        "timeline": [TimelineEntryOut.of(h, staff=staff) for h in order.history],
        "can_cancel": order.can_cancel,
        "cancellation": cancellation,
    }


def order_out(detail: OrderDetail) -> OrderOut:
    return OrderOut(**_common(detail, staff=False))


class GuestOrderOut(OrderOut):
    access_token: str = Field(
        description="Opens this order without an account: send it as the `X-Order-Token` "
        "header to read, cancel or return it (the link in the order's mails carries it too)"
    )


def guest_order_out(detail: OrderDetail, access_token: str) -> GuestOrderOut:
    return GuestOrderOut(**_common(detail, staff=False), access_token=access_token)


def staff_order_out(detail: OrderDetail) -> StaffOrderOut:
    order = detail.order
    return StaffOrderOut(
        **_common(detail, staff=True),
        user_id=order.user_id,
        checkout_id=order.checkout_id,
        payment_intent_id=order.payment_intent_id,
        version=order.version,
        next_statuses=order.next_statuses,
    )


class OrderSummaryOut(BaseModel):
    id: str
    status: str
    currency: str
    total: str
    refunded: str
    item_count: int
    created_at: datetime

    @classmethod
    def of(cls, s: OrderSummary) -> OrderSummaryOut:
        return cls(
            id=s.id,
            status=s.status,
            currency=s.currency,
            total=format_minor(s.total, s.currency),
            refunded=format_minor(s.refunded_total, s.currency),
            item_count=s.item_count,
            created_at=s.created_at,
        )


class StaffOrderSummaryOut(OrderSummaryOut):
    user_id: str | None = Field(description="The customer; null for a guest's order")
    email: str
    updated_at: datetime

    @classmethod
    def of_staff(cls, s: OrderSummary) -> StaffOrderSummaryOut:
        return cls(
            **OrderSummaryOut.of(s).model_dump(),
            user_id=s.user_id,
            email=s.email,
            updated_at=s.updated_at,
        )


class OrderPageOut(BaseModel):
    items: list[OrderSummaryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: OrderPage) -> OrderPageOut:
        return cls(items=[OrderSummaryOut.of(s) for s in page.items], next_cursor=page.next_cursor)


class StaffOrderPageOut(BaseModel):
    items: list[StaffOrderSummaryOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: OrderPage) -> StaffOrderPageOut:
        return cls(
            items=[StaffOrderSummaryOut.of_staff(s) for s in page.items],
            next_cursor=page.next_cursor,
        )


class CancelIn(BaseModel):
    reason: Annotated[str, PlainText(max_length=500)] | None = None


class TransitionIn(BaseModel):
    to: str = Field(min_length=1, max_length=24, json_schema_extra={"enum": [*ORDER_STATUSES]})
    reason: Annotated[str, PlainText(max_length=500)] | None = None
