"""A marketplace seller's performance, counted from what really happened to its order parts.

The buy box excludes a seller over its thresholds (``marketplace.performance``); this is the
reader that counts, registered in ``marketplace.performance_readers`` by ``modules.wire``. It
lives in the returns module because it reads the four modules that know what happened to a
part (orders: the parts and their cancellation; fulfilment: the shipments; returns: the refunds
of returned goods; reviews: the buyers' stars), and returns is the highest of them: it may
import the other three and the marketplace, none of which may import it.

Over the window (the parts placed since ``since``), per order part of the seller:

* **defective**: one of its lines came back in a refunded return and was **written off** at
  receipt (the goods were unsellable: broken, faulty, not as described; staff judge that when
  they receive them, where the customer's free-text reason cannot be trusted to say it), or the
  buyer of the part gave one of its products a **one- or two-star** review. Amazon's order
  defect rate counts negative feedback, A-to-z guarantee claims and chargebacks; we have no
  claims nor chargebacks, so a refunded defective return stands for a claim.
* **cancelled before fulfilment**: the order was cancelled, not by its buyer, and none of the
  part's lines had left (cancellations are only possible before anything shipped). As in
  Amazon's cancel rate, a cancellation the buyer asked for (its history's actor is the
  customer or the guest's link) is not the seller's doing and is not counted; one by staff
  (on the seller's behalf) or by the system is.
* **late**: the part's first shipment (the first parcel carrying one of its lines) left after
  the order time plus the offer's handling days (a handling time of 0 days is read as within
  the day: 24 hours), or it has not left yet and that moment has passed. Parts shipped, or
  overdue, are the late-shipment rate's denominator; a part cancelled before shipping is in
  neither.
* **rating**: the buyer's approved review of a product of the part, written after the order;
  a review counts once, for the buyer's latest such part of the seller before it was written
  (a guest's order has no reviews).

The house (the shop's own part of orders) is left out: its standing is not the buy box's to
judge, so the reader answers ``None`` for it and it keeps the figures last recorded.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import select

from mercato.db import UnitOfWork, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.marketplace import service as marketplace
from mercato.orders import service as orders
from mercato.returns.requests import REQUESTS, infos
from mercato.reviews import service as reviews

DEFECT_STARS = 2
"""A review of this many stars or fewer is a defect of the part it is about."""


def _by_buyer(actor: str | None) -> bool:
    return actor is not None and (actor == "guest" or actor.startswith("customer:"))


def dispatch_deadline(part: orders.OrderPartInfo) -> datetime:
    return part.created_at + timedelta(days=max(part.handling_days, 1))


async def _first_shipped(uow: UnitOfWork, parts: list[orders.SellerPart]) -> dict[str, datetime]:
    """Each part's first shipment: when it left (parts that have not shipped left out)."""
    by_order: dict[str, list[orders.OrderPartInfo]] = defaultdict(list)
    for p in parts:
        by_order[p.part.order_id].append(p.part)
    first: dict[str, datetime] = {}
    for order_id, order_parts in by_order.items():
        for shipment in await fulfilment.shipments_for_order(uow, order_id):
            if shipment.shipped_at is None:
                continue
            lines = {line.order_line_id for line in shipment.lines}
            for part in order_parts:
                if lines & set(part.line_ids) and (
                    part.id not in first or shipment.shipped_at < first[part.id]
                ):
                    first[part.id] = shipment.shipped_at
    return first


async def _written_off_refunds(uow: UnitOfWork, parts: list[orders.SellerPart]) -> set[str]:
    """The parts with a line written off in a refunded return."""
    order_ids = sorted({p.part.order_id for p in parts})
    if not order_ids:
        return set()
    rows = (
        await uow.execute(
            select(REQUESTS).where(
                REQUESTS.c.order_id.in_(order_ids), REQUESTS.c.status == "refunded"
            )
        )
    ).all()
    return {
        line.part_id
        for found in await infos(uow, rows)
        for line in found.lines
        if line.disposition == "write_off" and line.part_id is not None
    }


async def _reviews_by_part(uow: UnitOfWork, parts: list[orders.SellerPart]) -> dict[str, list[int]]:
    """The stars of the reviews each part's buyer wrote about its products (see the module
    docstring: each review once, for the buyer's latest part before it)."""
    users = {p.user_id for p in parts if p.user_id is not None}
    products = {pid for p in parts for pid in p.product_ids}
    stars: dict[str, list[int]] = defaultdict(list)
    for review in await reviews.reviews_by_buyers(uow, users, products):
        bought = [
            p
            for p in parts
            if p.user_id == review.user_id
            and review.product_id in p.product_ids
            and p.part.created_at <= review.created_at
        ]
        if bought:
            latest = max(bought, key=lambda p: (p.part.created_at, p.part.id))
            stars[latest.part.id].append(review.rating)
    return stars


async def seller_performance(
    uow: UnitOfWork,
    seller: marketplace.SellerInfo,
    since: datetime,
    now: datetime | None = None,
) -> marketplace.PerformanceCounts | None:
    """The seller's counts over its parts placed since ``since`` (``None`` for the house)."""
    if seller.is_house:
        return None
    now = now or utcnow()
    parts = await orders.seller_parts_since(uow, seller.id, since)
    shipped = await _first_shipped(uow, parts)
    written_off = await _written_off_refunds(uow, parts)
    stars = await _reviews_by_part(uow, parts)
    defective = cancelled = shipments = late = 0
    for p in parts:
        part = p.part
        left_at = shipped.get(part.id)
        if p.order_status == "cancelled" and left_at is None:
            cancelled += not _by_buyer(p.cancelled_by)
        elif left_at is not None:
            shipments += 1
            late += left_at > dispatch_deadline(part)
        elif now > dispatch_deadline(part):
            shipments += 1  # overdue: late whenever it leaves
            late += 1
        if part.id in written_off or any(s <= DEFECT_STARS for s in stars.get(part.id, ())):
            defective += 1
    ratings = [s for found in stars.values() for s in found]
    return marketplace.PerformanceCounts(
        orders=len(parts),
        defective_orders=defective,
        shipments=shipments,
        late_shipments=late,
        cancelled_before_fulfilment=cancelled,
        rating_total=sum(ratings),
        rating_count=len(ratings),
    )
