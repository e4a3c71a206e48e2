"""A customer's brand and category affinities: what the search's personal re-rank reads
(``modules.wire`` registers :func:`shopper_affinity` as the search's affinity reader).

Told from what the customer bought and kept (the order not cancelled, not every unit
returned) and, when the caller passes them, the products they viewed. Each purchase weighs
:data:`PURCHASE_WEIGHT`, halved every :data:`PURCHASE_HALF_LIFE` (a taste from years ago says
less than last month's); each view weighs :data:`VIEW_WEIGHT`, the most recent in full and
each older one :data:`VIEW_DECAY` of the one after it: looking is a weaker sign than buying.

A product's weight goes to its brand and its category, and to each of the category's ancestors
:data:`ANCESTOR_SHARE` times less per level (a customer of "frying pans" leans a little to all
of "cookware"). Per brand and per category the sums are divided by the largest, so the
favourite weighs 1; weights below :data:`FLOOR` are left out.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.orders import service as orders
from mercato.recommendations.viewed import recently_viewed
from mercato.search import service as search

PURCHASES = 200
"""The customer's latest order lines read (one indexed read)."""
MAX_VIEWS = 50
PURCHASE_WEIGHT = 1.0
PURCHASE_HALF_LIFE = timedelta(days=180)
VIEW_WEIGHT = 0.3
VIEW_DECAY = 0.85
ANCESTOR_SHARE = 0.5
FLOOR = 0.02

Weighted = tuple[str, float]  # (product id, weight)


async def customer_affinity(
    uow: UnitOfWork,
    user_id: str,
    *,
    viewed: Sequence[str] = (),
    now: datetime | None = None,
) -> search.Affinity:
    """The customer's affinities from their purchases and ``viewed`` (product ids, the most
    recent first): two reads, the order lines and the products' brands and categories."""
    purchases = await orders.customer_purchases(uow, user_id, limit=PURCHASES)
    signals = purchase_weights(purchases, now or utcnow()) + view_weights(viewed)
    if not signals:
        return search.Affinity()
    groups = await catalog.product_groups(uow, {product for product, _ in signals})
    return affinity_of(signals, groups)


def purchase_weights(purchases: Iterable[orders.Purchase], now: datetime) -> list[Weighted]:
    return [(p.product_id, PURCHASE_WEIGHT * _decay(now - p.placed_at)) for p in purchases]


def _decay(age: timedelta) -> float:
    """1 for a purchase made now, halved every :data:`PURCHASE_HALF_LIFE`."""
    return float(0.5 ** (max(age, timedelta(0)) / PURCHASE_HALF_LIFE))


def view_weights(viewed: Sequence[str]) -> list[Weighted]:
    recent = list(dict.fromkeys(viewed))[:MAX_VIEWS]  # a product viewed again: its latest view
    return [(product, VIEW_WEIGHT * VIEW_DECAY**i) for i, product in enumerate(recent)]


def affinity_of(
    signals: Iterable[Weighted], groups: Mapping[str, catalog.ProductGroups]
) -> search.Affinity:
    """The normalised brand and category weights of these weighted products (products the
    catalog does not know are left out)."""
    brands: defaultdict[str, float] = defaultdict(float)
    categories: defaultdict[str, float] = defaultdict(float)
    for product, weight in signals:
        group = groups.get(product)
        if group is None or not weight > 0:
            continue
        if group.brand:
            brands[group.brand] += weight
        slugs = [s for s in group.category_path.split("/") if s]
        for depth, slug in enumerate(reversed(slugs)):
            categories[slug] += weight * ANCESTOR_SHARE**depth
    return search.Affinity(_normalised(brands), _normalised(categories))


def _normalised(sums: Mapping[str, float]) -> dict[str, float]:
    top = max(sums.values(), default=0.0)
    if not top > 0 or not math.isfinite(top):
        return {}
    return {key: round(value / top, 6) for key, value in sums.items() if value / top >= FLOOR}


async def shopper_affinity(uow: UnitOfWork, user_id: str) -> search.Affinity:
    """The search's reader: :func:`customer_affinity` from the customer's purchases and the
    products they viewed lately (one more read)."""
    viewed = await recently_viewed(uow, user_id=user_id, guest_key=None, limit=MAX_VIEWS)
    return await customer_affinity(uow, user_id, viewed=viewed)
