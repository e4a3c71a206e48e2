"""Seller performance over a window (90 days by default) and the buy box's thresholds.

Rates, in basis points of the window's orders (Amazon's seller metrics):

* order defect rate = orders with a defect (a refund claim, a chargeback, a one- or two-star
  review of the order) / orders;
* late-shipment rate = shipments handed over after their promised dispatch day / shipments;
* pre-fulfilment cancel rate = orders the seller cancelled before shipping / orders;
* rating = the mean of the buyers' reviews of the seller's orders (times 100, with their count).

A seller over any threshold (settings ``marketplace_max_*_rate_bp``; 1 %, 4 % and 2.5 % by
default) is not eligible for the buy box. A seller without orders has no defects: eligible.

The counts come from ``performance_readers``, registered by the modules that know the orders,
shipments and reviews of a seller (the order split will); :func:`record_performance` stores the
figures and the standing, which the buy box reads without recomputing them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update

from mercato.db import UnitOfWork, utcnow
from mercato.marketplace.common import SELLERS, Performance, SellerInfo, publish_offers_changed
from mercato.marketplace.common import seller_product_ids as _product_ids
from mercato.marketplace.sellers import list_sellers
from mercato.settings import Settings

BASIS = 10_000


@dataclass(frozen=True, slots=True)
class PerformanceCounts:
    orders: int = 0
    defective_orders: int = 0
    shipments: int = 0
    late_shipments: int = 0
    cancelled_before_fulfilment: int = 0
    rating_total: int = 0  # the sum of the ratings' stars
    rating_count: int = 0


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_defect_rate_bp: int = 100
    max_late_shipment_rate_bp: int = 400
    max_cancel_rate_bp: int = 250
    days: int = 90

    @classmethod
    def of(cls, settings: Settings) -> Thresholds:
        return cls(
            settings.marketplace_max_defect_rate_bp,
            settings.marketplace_max_late_shipment_rate_bp,
            settings.marketplace_max_cancel_rate_bp,
            settings.marketplace_performance_days,
        )


PerformanceReader = Callable[
    [UnitOfWork, SellerInfo, datetime], Awaitable[PerformanceCounts | None]
]
performance_readers: list[PerformanceReader] = []
"""(uow, seller, since) → the seller's counts since then, ``None`` when the reader knows
nothing of the seller. The first answer wins."""


def rate_bp(part: int, whole: int) -> int:
    """``part / whole`` in basis points, rounded half up; 0 of nothing is 0."""
    if whole <= 0:
        return 0
    return (2 * part * BASIS + whole) // (2 * whole)


def figures(counts: PerformanceCounts, thresholds: Thresholds, now: datetime) -> Performance:
    defect = rate_bp(counts.defective_orders, counts.orders)
    late = rate_bp(counts.late_shipments, counts.shipments)
    cancel = rate_bp(counts.cancelled_before_fulfilment, counts.orders)
    rating = (
        (2 * counts.rating_total * 100 + counts.rating_count) // (2 * counts.rating_count)
        if counts.rating_count
        else None
    )
    return Performance(
        orders_counted=counts.orders,
        defect_rate_bp=defect,
        late_shipment_rate_bp=late,
        cancel_rate_bp=cancel,
        rating_x100=rating,
        rating_count=counts.rating_count,
        computed_at=now,
        eligible=(
            defect <= thresholds.max_defect_rate_bp
            and late <= thresholds.max_late_shipment_rate_bp
            and cancel <= thresholds.max_cancel_rate_bp
        ),
    )


async def record_performance(
    uow: UnitOfWork,
    seller: SellerInfo,
    counts: PerformanceCounts,
    thresholds: Thresholds,
    now: datetime | None = None,
) -> Performance:
    """Store the seller's figures and buy-box standing; a change of standing re-projects the
    featured prices of its products."""
    found = figures(counts, thresholds, now or utcnow())
    await uow.execute(
        update(SELLERS)
        .where(SELLERS.c.id == seller.id)
        .values(
            orders_counted=found.orders_counted,
            defect_rate_bp=found.defect_rate_bp,
            late_shipment_rate_bp=found.late_shipment_rate_bp,
            cancel_rate_bp=found.cancel_rate_bp,
            rating_x100=found.rating_x100,
            rating_count=found.rating_count,
            performance_at=found.computed_at,
            eligible=found.eligible,
        )
    )
    if found.eligible != seller.performance.eligible:
        await publish_offers_changed(uow, await _product_ids(uow, seller.id))
    return found


async def refresh_performance(uow: UnitOfWork, thresholds: Thresholds) -> int:
    """Recompute every seller's figures from the readers; returns how many were recorded."""
    now = utcnow()
    since = now - timedelta(days=thresholds.days)
    recorded = 0
    for seller in await list_sellers(uow, limit=100_000):
        for reader in performance_readers:
            counts = await reader(uow, seller, since)
            if counts is not None:
                await record_performance(uow, seller, counts, thresholds, now)
                recorded += 1
                break
    return recorded
