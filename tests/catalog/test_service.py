"""Catalog service rules used by other modules: variant look-ups and the test factory."""

from __future__ import annotations

from mercato.catalog import service as catalog
from mercato.db import Database
from tests.factories import make_product


async def test_get_variants_and_by_sku(db: Database) -> None:
    async with db.transaction() as session:
        product_id, variant_ids = await make_product(
            session,
            title="Nordhaven kettle",
            variants=[
                {"sku": "KET-1", "price": 2999, "options": {"colour": "red"}},
                {"sku": "KET-2", "price": 3499, "options": {"colour": "black"}, "active": False},
            ],
            brand="Nordhaven",
            category_slug="kettles",
        )
    async with db.transaction() as session:
        found = await catalog.get_variants(session, [*variant_ids, "var_unknown"])
        assert set(found) == set(variant_ids)
        first = found[variant_ids[0]]
        assert first.sku == "KET-1"
        assert first.product_id == product_id
        assert first.product_title == "Nordhaven kettle"
        assert first.price == 2999
        assert first.currency == "EUR"
        assert first.options == {"colour": "red"}
        assert first.active is True
        assert found[variant_ids[1]].active is False
        by_sku = await catalog.get_variant_by_sku(session, "KET-2")
        assert by_sku is not None and by_sku.id == variant_ids[1]
        assert await catalog.get_variant_by_sku(session, "NOPE") is None
        view = await catalog.get_product(session, product_id)
        assert view is not None
        assert (view.min_price, view.max_price) == (2999, 2999)


async def test_draft_product_variants_are_not_active(db: Database) -> None:
    async with db.transaction() as session:
        _, (variant_id,) = await make_product(session, status="draft")
    async with db.transaction() as session:
        info = (await catalog.get_variants(session, [variant_id]))[variant_id]
        assert info.active is False
        assert info.price == 1999
