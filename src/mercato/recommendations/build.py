"""Building the lists from the shop's orders: the rules, the similarity model, the best sellers.

The arithmetic is pure (:func:`compute_lists`, run off the event loop); reading the orders and
writing the lists are two short transactions around it.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from mercato.db import utcnow
from mercato.orders import service as orders
from mercato.recommendations import rules, similarity, store
from mercato.recommendations.store import SHOP_WIDE, Item
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
    lists: store.Lists  # version 0 until stored
    rules: int
    customers: int
    products: int
    bought_together: int
    also_bought: int
    popular: int
    model: str


def popular_items(
    counts: Sequence[int] | Any,
    items: Sequence[str],
    ranked: Sequence[tuple[str, orders.ProductRank]],
    size: int,
) -> list[Item]:
    """The sales rank's best sellers; a shop whose ranks were never computed yet counts the
    orders' baskets instead (``counts[i]``: baskets holding ``items[i]``, sorted by name)."""
    if ranked:
        return [Item(p, rank.score) for p, rank in ranked[:size]]
    counts = np.asarray(counts, dtype=np.int64)
    best = np.lexsort((np.arange(len(counts)), -counts))[:size]  # ties by name
    return [Item(items[i], float(counts[i])) for i in best.tolist()]


def compute_lists(
    baskets: Sequence[orders.SoldBasket],
    ranked: Sequence[tuple[str, orders.ProductRank]],
    settings: Settings,
    advance: Callable[[str], None] = lambda _step: None,
) -> Computed:
    size = settings.recs_list_size
    sold = rules.Baskets.of([b.product_ids for b in baskets])
    found = rules.rule_arrays(
        sold,
        min_support=settings.recs_min_support,
        min_confidence=settings.recs_min_confidence,
    )
    together = rules.top_rules(found, size)
    advance("rules")
    x = similarity.interactions_of_baskets([b.customer for b in baskets], sold.matrix, sold.items)
    model = settings.recs_also_bought_model
    if model == "ease" and len(x.items) > similarity.EASE_MAX_ITEMS:
        model = "rp3beta"
    if model == "ease":
        near = similarity.top_of_matrix(similarity.ease(x.matrix), x.items, size)
    else:
        near = similarity.top_of_rows(similarity.model_rows(model, x.matrix), x.items, size)
    advance("similarity")
    popular = popular_items(sold.counts(), sold.items, ranked, size * POPULAR_DEPTH)
    lists = _lists(sold.items, together, near, popular, model)
    return Computed(
        lists,
        len(found),
        len(x.customers),
        len(x.items),
        lists.listed("bought_together"),
        lists.listed("also_bought"),
        len(popular),
        model,
    )


def _lists(
    items: Sequence[str],
    together: rules.RuleArrays,
    near: similarity.Neighbours,
    popular: list[Item],
    model: str,
) -> store.Lists:
    """The three kinds over one list of names: the products (sorted), then the shop-wide key
    and any best seller the orders do not hold."""
    names = list(items)
    extra = [i.product_id for i in popular if not _holds(items, i.product_id)]
    names += [SHOP_WIDE, *dict.fromkeys(extra)]
    index = {name: len(items) + k for k, name in enumerate(names[len(items) :])}

    def position(name: str) -> int:
        found = index.get(name)
        return found if found is not None else bisect.bisect_left(items, name)

    group_starts = np.flatnonzero(np.r_[True, together.antecedent[1:] != together.antecedent[:-1]])
    owners = together.antecedent[group_starts] if len(together) else np.zeros(0, np.int64)
    indptr = (
        np.r_[group_starts, len(together)].astype(np.int64)
        if len(together)
        else np.zeros(1, np.int64)
    )
    kinds = {
        "popular": store.KindRows(
            np.array([position(SHOP_WIDE)]),
            np.array([0, len(popular)]),
            np.array([position(i.product_id) for i in popular], dtype=np.int64),
            np.array([i.score for i in popular], dtype=np.float64),
        ),
        "bought_together": store.KindRows(
            owners,
            indptr,
            together.consequent,
            together.lift,
            together.confidence,
            together.support,
            together.lift,
        ),
        "also_bought": store.KindRows(
            np.arange(len(items)),
            near.indptr,
            near.targets,
            np.round(near.scores, 6),
        ),
    }
    return store.assemble(0, names, kinds, model)


def _holds(items: Sequence[str], name: str) -> bool:
    at = bisect.bisect_left(items, name)
    return at < len(items) and items[at] == name


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
    if runtime.redis is not None:
        # After the commit: the copy is only ever of a version the database serves.
        await store.copy_to_redis(
            runtime.redis, computed.lists.with_version(version, computed.model)
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
