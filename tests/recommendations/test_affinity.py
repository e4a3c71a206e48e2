"""A customer's brand and category affinities: told from what they bought and kept (and what
they viewed, weighing less), recent more than old, normalised so the favourite weighs 1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mercato.catalog import service as catalog
from mercato.db import Database
from mercato.orders import service as orders
from mercato.recommendations import affinity as a
from mercato.search import service as search
from tests.factories import make_category, make_product
from tests.orders.conftest import LineSpec, make_draft

NOW = datetime(2025, 6, 1, tzinfo=UTC)
GROUPS = {
    "pan": catalog.ProductGroups("acme", "home/cookware/pans"),
    "pot": catalog.ProductGroups("brio", "home/cookware/pots"),
    "lamp": catalog.ProductGroups(None, "home/lamps"),
}


def test_a_purchase_halves_every_half_life_and_a_view_weighs_less() -> None:
    bought = [
        orders.Purchase("pan", NOW),
        orders.Purchase("pot", NOW - a.PURCHASE_HALF_LIFE),
        orders.Purchase("lamp", NOW + timedelta(days=1)),  # a clock ahead: counted as now
    ]
    assert a.purchase_weights(bought, NOW) == [("pan", 1.0), ("pot", 0.5), ("lamp", 1.0)]
    views = a.view_weights(["pot", "pan", "pot", "lamp"])  # the most recent first
    assert [p for p, _ in views] == ["pot", "pan", "lamp"]
    assert views[0][1] == a.VIEW_WEIGHT < a.PURCHASE_WEIGHT
    assert views[0][1] > views[1][1] > views[2][1]
    assert len(a.view_weights([f"p{i}" for i in range(500)])) == a.MAX_VIEWS


def test_weights_go_to_the_brand_and_the_category_path_normalised() -> None:
    found = a.affinity_of([("pan", 1.0), ("pot", 0.5), ("unknown", 9.0)], GROUPS)
    assert found.brands == {"acme": 1.0, "brio": 0.5}
    # Half to the parent, a quarter to the grandparent: pans 1, pots 0.5, cookware (1 + 0.5) / 2.
    assert found.categories == {"pans": 1.0, "pots": 0.5, "cookware": 0.75, "home": 0.375}
    assert not a.affinity_of([], GROUPS)
    assert not a.affinity_of([("pan", 0.0)], GROUPS)
    assert a.affinity_of([("lamp", 1.0)], GROUPS).brands == {}


async def _sell(db: Database, user_id: str | None, *products: tuple[str, str]) -> str:
    lines = [LineSpec(variant, product, 2, 1000) for product, variant in products]
    async with db.transaction() as uow:
        order = await orders.create_order(
            uow, make_draft(user_id=user_id, email=f"{user_id}@example.com", lines=lines)
        )
    return order.id


async def test_only_what_the_customer_bought_and_kept_counts(db: Database) -> None:
    made: dict[str, tuple[str, str]] = {}
    async with db.transaction() as uow:
        await make_category(uow, "Cookware", "home")
        for name, brand in (
            ("kept", "Keeper"),
            ("cancelled", "Canceller"),
            ("returned", "Returner"),
            ("half", "Halfer"),
            ("other", "Otherer"),
            ("viewed", "Viewer"),
        ):
            pid, [vid] = await make_product(uow, title=name, brand=brand, category_slug="cookware")
            made[name] = (pid, vid)
    await _sell(db, "usr_fan", made["kept"])
    cancelled = await _sell(db, "usr_fan", made["cancelled"])
    returned = await _sell(db, "usr_fan", made["returned"], made["half"])
    await _sell(db, "usr_other", made["other"])
    async with db.transaction() as uow:
        await orders.transition(uow, cancelled, "cancelled", actor="test")
        order = await orders.get_order(uow, returned)
        assert order is not None
        shipped = [(line.id, 2) for line in order.lines]
        await orders.record_shipped(uow, returned, shipped)
        await orders.transition(uow, returned, "shipped", actor="test")
        # Every unit of "returned" comes back, one of the two of "half".
        gone = made["returned"][0]
        back = [(line.id, 2 if line.product_id == gone else 1) for line in order.lines]
        await orders.record_returned(uow, returned, back)

    async with db.transaction() as uow:
        found = await a.customer_affinity(uow, "usr_fan", viewed=[made["viewed"][0]])
        nobody = await a.customer_affinity(uow, "usr_nobody")
    assert set(found.brands) == {"keeper", "halfer", "viewer"}
    assert found.brands["keeper"] == found.brands["halfer"] == 1.0
    assert found.brands["viewer"] == pytest.approx(a.VIEW_WEIGHT, rel=1e-3)
    assert found.categories == {"cookware": 1.0, "home": 0.5}
    assert nobody == search.Affinity() and not nobody
