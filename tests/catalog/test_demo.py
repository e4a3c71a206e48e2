"""The demo catalog generator: deterministic, believable, and bulk-inserted."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from mercato.catalog import service as catalog
from mercato.catalog.demo import ShopGenerator, seed_catalog
from mercato.catalog.models import Category, Product, Variant
from mercato.db import Database
from mercato.events import OutboxEvent


def _summary(products: int, seed: int) -> list[tuple[str, list[str], list[int]]]:
    shop = ShopGenerator(products, seed, currency="EUR")
    out = []
    for batch in shop.batches(size=7):
        by_product: dict[str, list[tuple[str, int]]] = {}
        for v in batch.variants:
            by_product.setdefault(v["product_id"], []).append((v["sku"], v["price"]))
        for p in batch.products:
            skus, prices = zip(*by_product[p["id"]], strict=True)
            out.append((p["title"], list(skus), list(prices)))
    return out


def test_same_seed_same_shop() -> None:
    first = _summary(40, seed=7)
    assert first == _summary(40, seed=7)
    assert first != _summary(40, seed=8)
    assert (
        ShopGenerator(5, 7, currency="EUR").categories
        == ShopGenerator(5, 7, currency="EUR").categories
    )


def test_category_tree_is_deep_and_varied() -> None:
    categories = ShopGenerator(1, 1, currency="EUR").categories
    leaves = [c for c in categories if c.leaf is not None]
    assert len(leaves) >= 40
    assert max(c.depth for c in categories) >= 2
    assert {
        "electronics/audio/headphones",
        "home-kitchen/kitchen-appliances/kettles",
        "fashion/shoes/sneakers",
        "fashion/shoes/trainers",
    } <= {c.path for c in categories}


async def test_seed_catalog(db: Database) -> None:
    reported: list[int] = []
    variant_ids = await seed_catalog(db, 120, seed=3, progress=reported.append, currency="EUR")
    assert sum(reported) == 120
    assert len(variant_ids) == len(set(variant_ids))
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(Product)) == 120
        assert await session.scalar(select(func.count()).select_from(Variant)) == len(variant_ids)
        per_product = Counter((await session.scalars(select(Variant.product_id))).all())
        assert set(per_product.values()) <= {1, 2, 3, 4, 5, 6}
        assert max(per_product.values()) > 1
        prices = (await session.scalars(select(Variant.price))).all()
        assert all(p > 0 for p in prices)
        assert any(p % 100 != 0 for p in prices)  # prices with cents
        discounted = await session.scalar(
            select(func.count()).select_from(Variant).where(Variant.compare_at.is_not(None))
        )
        assert discounted
        assert (
            await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.type == "ProductCreated")
            )
            == 120
        )
        kettles = await session.scalar(select(Category).where(Category.slug == "kettles"))
        assert kettles is not None and kettles.path == "home-kitchen/kitchen-appliances/kettles"

        # The rows behave like any other catalog data.
        info = await catalog.get_variants(session, variant_ids[:10])
        assert len(info) == 10 and all(v.active and v.currency == "EUR" for v in info.values())
        page = await catalog.list_products(
            session,
            catalog.ProductQuery(category_slug="electronics", sort="price_asc", limit=100),
            secret_key="k",
        )
        assert page.items
        assert all(p.category.path.startswith("electronics/") for p in page.items)
        mins = [p.min_price or 0 for p in page.items]
        assert mins == sorted(mins)
        for p in page.items:
            assert p.min_price is not None
            assert p.min_price == min(v.price for v in p.variants)
            assert p.attributes and p.media and p.brand is not None

    # The same seed builds the same shop: SKUs and titles match the generator's.
    expected = _summary(120, seed=3)
    async with db.transaction() as session:
        rows = (await session.execute(select(Product.title, Product.id))).all()
        assert sorted(t for t, _ in rows) == sorted(t for t, _, _ in expected)
        skus = set((await session.scalars(select(Variant.sku))).all())
        assert skus == {s for _, ss, _ in expected for s in ss}
