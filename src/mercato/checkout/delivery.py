"""Delivery estimates: the arrival rule (:mod:`~mercato.checkout.arrival`) fed with the serving
warehouse's handling time (the inventory's) and each shipping method's transit days.

A parcel leaves when its slowest line is ready: for a cart drawn from several warehouses the
estimate is the latest line's. Nothing is estimated when some line cannot reach the
destination (no stock in a warehouse shipping there): a date for part of an order would mislead.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from mercato.catalog import service as catalog
from mercato.checkout.arrival import Arrival, DeliveryClock, arrival_after, dispatch_day
from mercato.checkout.shipping import ShippingMethodInfo, shipping_methods_for
from mercato.db import UnitOfWork, utcnow
from mercato.inventory import service as inventory
from mercato.problems import not_found
from mercato.settings import Settings


def delivery_clock(settings: Settings) -> DeliveryClock:
    """The shop's working calendar as configured (``MERCATO_TIMEZONE``,
    ``MERCATO_ORDER_CUTOFF_HOUR``)."""
    return DeliveryClock.of(settings.timezone, settings.order_cutoff_hour)


async def dispatch_day_for(
    uow: UnitOfWork,
    wanted: Mapping[str, int],
    country: str,
    clock: DeliveryClock,
    *,
    now: datetime | None = None,
) -> date | None:
    """The business day an order of ``wanted`` (variant id → quantity) placed ``now`` would
    leave for ``country``: its slowest line's. ``None`` when some line cannot reach it."""
    if not wanted:
        return None
    served = await inventory.serving_warehouses(uow, wanted, country)
    if any(variant_id not in served for variant_id in wanted):
        return None
    slowest = max(s.handling_days for s in served.values())
    return dispatch_day(now or utcnow(), clock, slowest)


async def variant_arrivals(
    uow: UnitOfWork,
    variant_ids: Collection[str],
    country: str,
    clock: DeliveryClock,
    *,
    now: datetime | None = None,
) -> dict[str, Arrival]:
    """When one unit of each variant would arrive at ``country`` with the first shipping
    method there in its currency (what a product page shows for each choice). Variants that
    cannot get there are left out."""
    variants = await catalog.get_variants(uow, variant_ids)
    served = await inventory.serving_warehouses(uow, dict.fromkeys(variants, 1), country)
    ordered_at = now or utcnow()
    first_method: dict[str, ShippingMethodInfo | None] = {}
    found: dict[str, Arrival] = {}
    for variant_id, serving in served.items():
        currency = variants[variant_id].currency
        if currency not in first_method:
            methods = await shipping_methods_for(uow, country, currency=currency)
            first_method[currency] = methods[0] if methods else None
        method = first_method[currency]
        if method is not None:
            ships = dispatch_day(ordered_at, clock, serving.handling_days)
            found[variant_id] = arrival_after(ships, method.min_days, method.max_days)
    return found


@dataclass(frozen=True, slots=True)
class DeliveryOption:
    method: ShippingMethodInfo
    arrives: Arrival


@dataclass(frozen=True, slots=True)
class ProductDelivery:
    """When one unit of a product's variant would arrive at ``country`` with each shipping
    method (in display order); no options when it cannot get there."""

    product_id: str
    variant_id: str | None
    country: str
    options: tuple[DeliveryOption, ...]

    @property
    def arrives(self) -> Arrival | None:
        """With the first method, the one a cart estimate and checkout start from."""
        return self.options[0].arrives if self.options else None


async def product_delivery(
    uow: UnitOfWork,
    product_id: str,
    country: str,
    clock: DeliveryClock,
    *,
    variant_id: str | None = None,
    now: datetime | None = None,
) -> ProductDelivery:
    """When ``variant_id`` (by default the first of the product's variants that can reach
    ``country``) would arrive there. 404 ``not_found`` for a product that is not for sale or a
    variant that is not one of its own."""
    product = await catalog.get_product(uow, product_id)
    if product is None:
        raise not_found("Product", product_id)
    variants = {v.id: v for v in product.variants}
    if variant_id is not None and variant_id not in variants:
        raise not_found("Variant", variant_id)
    wanted = [variant_id] if variant_id is not None else list(variants)
    served = await inventory.serving_warehouses(uow, dict.fromkeys(wanted, 1), country)
    chosen = next((v for v in wanted if v in served), None)
    if chosen is None:
        return ProductDelivery(product.id, variant_id, country, ())
    ships = dispatch_day(now or utcnow(), clock, served[chosen].handling_days)
    methods = await shipping_methods_for(uow, country, currency=variants[chosen].currency)
    options = tuple(
        DeliveryOption(m, arrival_after(ships, m.min_days, m.max_days)) for m in methods
    )
    return ProductDelivery(product.id, chosen, country, options)
