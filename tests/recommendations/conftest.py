"""Recommendations test helpers: a small shop (Berlin ships to Germany, Lyon to France) whose
orders are written the way the checkout leaves them, so the lists are built from real rows."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from mercato.catalog import service as catalog
from mercato.checkout import service as checkout
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.factories import make_product
from tests.orders.conftest import LineSpec, make_draft

# kettle, teapot, mugs, filters stocked in Berlin; "lyon" only in Lyon; "gone" is archived once
# sold; "tray" is sold but never together with the kettle.
PRODUCTS = ("kettle", "teapot", "mugs", "filters", "lyon", "gone", "tray")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Every request asks for the served version: a rebuild shows at once.
    return settings.model_copy(
        update={"recs_reload_seconds": 0.0, "recs_rebuild_min_new_orders": 3}
    )


@dataclass(frozen=True, slots=True)
class Shop:
    product: dict[str, str]  # name -> product id
    variant: dict[str, str]  # name -> variant id


def runtime_of(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def make_shop(db: Database) -> Shop:
    product: dict[str, str] = {}
    variant: dict[str, str] = {}
    async with db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["DE", "AT"])
        await inventory.create_warehouse(uow, code="LYS", name="Lyon", countries=["FR"])
        await checkout.create_zone(uow, name="Europe", countries=["AT", "DE", "FR"])
        for name in PRODUCTS:
            pid, [vid] = await make_product(
                uow,
                title=f"Test {name}",
                variants=[{"sku": f"SKU-{name.upper()}", "price": 1000}],
            )
            product[name], variant[name] = pid, vid
            await inventory.receive(
                uow, f"SKU-{name.upper()}", "LYS" if name == "lyon" else "BER", 50
            )
    return Shop(product, variant)


async def sell(db: Database, shop: Shop, customer: str, *names: str) -> str:
    lines = [LineSpec(shop.variant[n], shop.product[n], 1, 1000, f"SKU-{n.upper()}") for n in names]
    async with db.transaction() as uow:
        order = await orders.create_order(
            uow, make_draft(user_id=None, email=f"{customer}@example.com", lines=lines)
        )
    return order.id


async def sell_history(db: Database, shop: Shop) -> None:
    """The kettle goes with the teapot (often), the lyon product and the archived one (once
    each); mugs sell alone the most; the tray sells with mugs."""
    for i in range(4):
        await sell(db, shop, f"tea{i}", "kettle", "teapot")
    await sell(db, shop, "fr", "kettle", "lyon")
    await sell(db, shop, "old", "kettle", "gone")
    await sell(db, shop, "mix", "kettle", "mugs", "filters")
    for i in range(5):
        await sell(db, shop, f"mug{i}", "mugs", "tray")
    async with db.transaction() as uow:
        await catalog.archive_product(uow, shop.product["gone"])
