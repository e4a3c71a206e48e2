"""Building the lists from the shop's orders: the rules, the similarity model, the best sellers.

The arithmetic is pure (:func:`compute_lists`, run off the event loop); reading the orders and
writing the lists are two short transactions around it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from mercato.db import utcnow
from mercato.orders import service as orders
from mercato.recommendations import rules, similarity, store
from mercato.recommendations.store import SHOP_WIDE, Item, Key
from mercato.runtime import Runtime
from mercato.settings import Settings

POPULAR_DEPTH = 5  # the popular list is deeper: it fills every other list up after filtering
STEPS = ("read orders", "rules", "similarity", "store")


@dataclass(frozen=True, slots=True)
class BuildStats:
    version: int
    orders: int
    customers: int
    products: int
    rules: int
    bought_together: int  # products with a list
    also_bought: int
    popular: int
    model: str
    seconds: float


@dataclass(frozen=True, slots=True)
class Computed:
    lists: list[tuple[Key, list[Item]]]
    rules: int
    customers: int
    products: int
    bought_together: int
    also_bought: int
    popular: int
    model: str


def popular_items(
    baskets: Sequence[orders.SoldBasket],
    ranked: Sequence[tuple[str, orders.ProductRank]],
    size: int,
) -> list[Item]:
    """The sales rank's best sellers; a shop whose ranks were never computed yet counts the
    orders' baskets instead."""
    if ranked:
        return [Item(p, rank.score) for p, rank in ranked[:size]]
    counts = Counter(p for b in baskets for p in b.product_ids)
    best = sorted(counts.items(), key=lambda pc: (-pc[1], pc[0]))[:size]
    return [Item(p, float(n)) for p, n in best]


def compute_lists(
    baskets: Sequence[orders.SoldBasket],
    ranked: Sequence[tuple[str, orders.ProductRank]],
    settings: Settings,
    advance: Callable[[str], None] = lambda _step: None,
) -> Computed:
    size = settings.recs_list_size
    found = rules.pair_rules(
        [b.product_ids for b in baskets],
        min_support=settings.recs_min_support,
        min_confidence=settings.recs_min_confidence,
    )
    together = rules.rules_by_product(found, size)
    advance("rules")
    x = similarity.Interactions.of((b.customer, p) for b in baskets for p in b.product_ids)
    model = settings.recs_also_bought_model
    if model == "ease" and len(x.items) > similarity.EASE_MAX_ITEMS:
        model = "rp3beta"
    neighbours = (
        similarity.top_neighbours(similarity.scores(model, x.matrix), x.items, size)
        if x.items
        else {}
    )
    advance("similarity")
    popular = popular_items(baskets, ranked, size * POPULAR_DEPTH)
    lists: list[tuple[Key, list[Item]]] = [(("popular", SHOP_WIDE), popular)]
    lists.extend(
        (
            ("bought_together", product),
            [Item(r.consequent, r.lift, r.confidence, r.support, r.lift) for r in found_rules],
        )
        for product, found_rules in sorted(together.items())
    )
    lists.extend(
        (("also_bought", product), [Item(p, round(s, 6)) for p, s in near])
        for product, near in sorted(neighbours.items())
    )
    return Computed(
        lists,
        len(found),
        len(x.customers),
        len(x.items),
        len(together),
        len(neighbours),
        len(popular),
        model,
    )


async def build(
    runtime: Runtime,
    *,
    advance: Callable[[str], None] = lambda _step: None,
    now: datetime | None = None,
) -> BuildStats:
    """Rebuild every list from the orders and switch shoppers to them at once."""
    started = time.perf_counter()
    settings = runtime.settings
    built_at = now or utcnow()
    async with runtime.db.transaction() as uow:
        baskets = await orders.sold_baskets(uow)
        ranked = await orders.top_sellers(uow, settings.recs_list_size * POPULAR_DEPTH)
    advance("read orders")
    computed = await asyncio.to_thread(compute_lists, baskets, ranked, settings, advance)
    async with runtime.db.transaction() as uow:
        version = await store.write(
            uow,
            computed.lists,
            built_at=built_at,
            orders_seen=len(baskets),
            model=computed.model,
        )
    advance("store")
    return BuildStats(
        version=version,
        orders=len(baskets),
        customers=computed.customers,
        products=computed.products,
        rules=computed.rules,
        bought_together=computed.bought_together,
        also_bought=computed.also_bought,
        popular=computed.popular,
        model=computed.model,
        seconds=time.perf_counter() - started,
    )


async def rebuild_if_due(runtime: Runtime) -> int:
    """The worker's job: rebuild when ``recs_rebuild_min_new_orders`` orders were placed since
    the last build (one indexed count), so a quiet shop does no work. 1 when it rebuilt."""
    async with runtime.db.transaction() as uow:
        last = await store.last_build(uow)
        arrived = await orders.orders_placed_since(uow, last[0] if last else None)
    if arrived < runtime.settings.recs_rebuild_min_new_orders:
        return 0
    await build(runtime)
    return 1
