"""Demo mode: the id-derived placeholder units hold while the shop has no sales figures at all;
the first real figures replace them for every product (not only the ones sold), and they come
back once the last sale leaves the window."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from mercato.catalog import service as catalog
from mercato.db import Database
from mercato.orders import service as orders
from mercato.search import service as search
from mercato.search.engine import demo_signals
from mercato.settings import Settings
from tests.checkout.conftest import fill_cart, make_customer, make_shop, make_variant, post_checkout
from tests.sales_rank.test_sales_rank import (
    WINDOW,
    best_selling,
    index_order,
    refresh,
    rt,
    stored,
    sync_index,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"demo_mode": True})


async def test_placeholders_give_way_to_real_sales(
    app: FastAPI, client: httpx.AsyncClient, adb: Database
) -> None:
    await make_shop(adb)
    variants = [await make_variant(adb, price=1000 + i) for i in range(5)]
    async with adb.transaction() as uow:
        found = await catalog.get_variants(uow, variants)
    products = [found[v].product_id for v in variants]
    placeholder = {p: (demo_signals(p)[2], float(demo_signals(p)[2])) for p in products}
    await search.reindex(rt(app))
    assert (await index_order(client))[0] == best_selling(placeholder, products)

    # One real sale, of the product the placeholder ranks last.
    last = best_selling(placeholder, products)[-1]
    buyer = await make_customer(adb)
    await fill_cart(adb, buyer.id, (variants[products.index(last)], 1))
    r = await post_checkout(client, buyer)
    assert r.status_code == 201, r.text
    async with adb.transaction() as uow:
        order = await orders.get_order(uow, r.json()["order_id"])
    assert order is not None
    assert await refresh(adb, order.created_at) == [last]
    real = await stored(adb, products)
    await sync_index(app)
    searched = (await index_order(client))[0]
    assert searched == best_selling(real, products)  # the others now rank by 0 units
    assert searched[0] == last

    # The sale leaves the window: no figures at all, the placeholders are back.
    assert await refresh(adb, order.created_at + timedelta(days=WINDOW)) == [last]
    await sync_index(app)
    assert (await index_order(client))[0] == best_selling(placeholder, products)
