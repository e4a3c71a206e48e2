"""Index documents for the demo catalog straight from its generator, without a database.

The benchmark and the relevance test need large catalogs fast: the catalog's seeded generator
gives the very products ``mercato demo`` would store (same titles, brands, categories,
attributes, variants, prices and dates), and this turns them into :class:`ProductSource`
records. Stock comes from the product id's hash here (one product in twenty is sold out, the
others lie in one or two of three warehouses), where the demo shop has real stock rows;
ratings and units sold are :func:`engine.demo_signals`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mercato.catalog.service import ShopGenerator
from mercato.search.engine import ProductSource, demo_signals, id_hash


def _chains(shop: ShopGenerator) -> dict[str, tuple[tuple[str, str], ...]]:
    by_id = {c.id: c for c in shop.categories}
    chains: dict[str, tuple[tuple[str, str], ...]] = {}
    for category in shop.categories:
        chain = []
        node: Any = category
        while node is not None:
            chain.append((node.slug, node.name))
            node = by_id.get(node.parent_id) if node.parent_id else None
        chains[category.id] = tuple(reversed(chain))
    return chains


GENERATED_WAREHOUSES = ("wh_generated_ber", "wh_generated_lys", "wh_generated_ldn")
"""Where generated stock lies (ids standing for the demo's Berlin, Lyon and London)."""


def generated_stock(product_id: str) -> tuple[str, ...]:
    """The warehouses holding a generated product's units, from its id's hash: one product in
    twenty is sold out, the others lie in one warehouse (Berlin most often) or two."""
    h = id_hash(product_id)
    if h % 20 == 0:
        return ()
    first = (0, 0, 0, 1, 1, 2)[(h >> 40) % 6]
    second = (first + 1 + (h >> 44) % 2) % 3
    held = {first, second} if (h >> 48) % 4 == 0 else {first}
    return tuple(GENERATED_WAREHOUSES[i] for i in sorted(held))


def generated_sources(products: int, seed: int = 42, *, currency: str) -> Iterator[ProductSource]:
    """The demo catalog of ``products`` products for ``seed`` priced in ``currency``, one index
    record each."""
    shop = ShopGenerator(products, seed, currency=currency)
    chains = _chains(shop)
    brands = {b["id"]: b for b in shop.brands}
    for batch in shop.batches():
        variants: dict[str, list[dict[str, Any]]] = {}
        for v in batch.variants:
            variants.setdefault(v["product_id"], []).append(v)
        for p in batch.products:
            own = variants[p["id"]]
            brand = brands[p["brand_id"]]
            rating, rating_count, sales = demo_signals(p["id"])
            options = dict.fromkeys(
                (name, value) for v in own for name, value in v["options"].items()
            )
            stocked_in = generated_stock(p["id"])
            yield ProductSource(
                id=p["id"],
                title=p["title"],
                description=p["description"],
                brand_slug=brand["slug"],
                brand_name=brand["name"],
                categories=chains[p["category_id"]],
                attributes=dict(p["attributes"]),
                options=tuple(options),
                skus=tuple(v["sku"] for v in own),
                currency=p["currency"],
                min_price=p["min_price"],
                max_price=p["max_price"],
                in_stock=bool(stocked_in),
                image=p["media"][0] if p["media"] else None,
                created_at=p["created_at"],
                rating=rating,
                rating_count=rating_count,
                sales=sales,
                stocked_in=stocked_in,
            )
