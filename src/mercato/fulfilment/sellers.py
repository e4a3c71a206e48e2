"""A marketplace seller's side of fulfilment: the parts of orders it has to ship (its lines,
where they go, what is left, its parcels) and shipping one part, which runs the same
ship-and-capture workflow as the warehouse back office, limited to that part's units.

Who may see which part: a seller its own (another seller's part is a 404, as if it did not
exist), staff every part (the house's too). The caller's seller comes from
``marketplace.seller_scope``.
"""

from __future__ import annotations

from dataclasses import dataclass

from mercato.db import UnitOfWork
from mercato.fulfilment.queries import ShipmentInfo, check_actor, shipments_for_order
from mercato.fulfilment.shipping import ShipmentRequest, create_shipment
from mercato.identity.service import UserInfo
from mercato.marketplace import service as marketplace
from mercato.orders import service as orders
from mercato.problems import not_found, validation_problem
from mercato.runtime import Runtime

MAX_PARTS_PAGE = 100


@dataclass(frozen=True, slots=True)
class SellerOrderPart:
    """One seller's part of an order, as the seller ships it."""

    part: orders.OrderPartInfo
    order: orders.OrderInfo
    seller_name: str
    lines: tuple[orders.OrderLineInfo, ...]
    shipments: tuple[ShipmentInfo, ...]

    @property
    def units(self) -> int:
        return sum(line.quantity for line in self.lines)

    @property
    def units_left(self) -> int:
        """Units not shipped yet (cancelled parts have none left)."""
        if self.part.status == "cancelled" or self.order.status == "cancelled":
            return 0
        return sum(line.quantity - line.quantity_shipped for line in self.lines)

    @property
    def can_ship(self) -> bool:
        return self.units_left > 0 and self.order.status in orders.SHIPPABLE


@dataclass(frozen=True, slots=True)
class SellerOrderPage:
    items: list[SellerOrderPart]
    next_before: str | None


async def _part_view(
    uow: UnitOfWork, part: orders.OrderPartInfo, names: dict[str, str]
) -> SellerOrderPart | None:
    order = await orders.get_order(uow, part.order_id)
    if order is None:
        return None
    mine = set(part.line_ids)
    shipments = [
        s
        for s in await shipments_for_order(uow, order.id)
        if any(line.order_line_id in mine for line in s.lines)
    ]
    return SellerOrderPart(
        part=part,
        order=order,
        seller_name=names.get(part.seller_id, part.seller_id),
        lines=tuple(line for line in order.lines if line.id in mine),
        shipments=tuple(shipments),
    )


async def seller_orders(
    uow: UnitOfWork,
    user: UserInfo,
    *,
    seller_id: str | None = None,
    before: str | None = None,
    limit: int = 20,
) -> SellerOrderPage:
    """The caller's order parts, newest first, ``limit`` of them older than the part
    ``before``; staff see every seller's (or ``seller_id``'s). 403 ``no_seller`` for an
    account acting for no seller."""
    if not 1 <= limit <= MAX_PARTS_PAGE:
        raise validation_problem("limit", f"must be between 1 and {MAX_PARTS_PAGE}")
    scope = await marketplace.seller_scope(uow, user)
    wanted = scope if scope is not None else seller_id
    ids = await orders.seller_part_ids(uow, wanted, limit=limit + 1, before=before)
    parts = [p for p in [await orders.get_order_part(uow, i) for i in ids[:limit]] if p]
    names = await marketplace.seller_names(uow, {p.seller_id for p in parts})
    items = [v for v in [await _part_view(uow, p, names) for p in parts] if v is not None]
    return SellerOrderPage(items=items, next_before=ids[limit - 1] if len(ids) > limit else None)


async def seller_order(uow: UnitOfWork, user: UserInfo, part_id: str) -> SellerOrderPart:
    """One part of an order the caller may ship; 404 when it is unknown or another seller's."""
    scope = await marketplace.seller_scope(uow, user)
    part = await orders.get_order_part(uow, part_id)
    if part is None or (scope is not None and part.seller_id != scope):
        raise not_found("Order part", part_id)
    found = await _part_view(uow, part, await marketplace.seller_names(uow, {part.seller_id}))
    if found is None:
        raise not_found("Order part", part_id)
    return found


async def ship_part(
    runtime: Runtime, part_id: str, request: ShipmentRequest, *, user: UserInfo
) -> ShipmentInfo:
    """Ship units of one seller's part of an order (``request.lines`` left out: every unit of
    the part not shipped yet), capturing their share of the payment first, with the same
    workflow and the same problems as :func:`~.shipping.create_shipment`. A seller ships its
    own parts only (another seller's: 404); staff any part."""
    async with runtime.db.transaction() as uow:
        found = await seller_order(uow, user, part_id)
    actor = check_actor(f"{user.role}:{user.id}")
    scoped = ShipmentRequest(
        carrier=request.carrier,
        service=request.service,
        tracking_number=request.tracking_number,
        lines=request.lines,
        fulfilment_id=request.fulfilment_id,
        shipment_id=request.shipment_id,
        part_id=found.part.id,
    )
    return await create_shipment(runtime, found.order.id, scoped, actor=actor)
