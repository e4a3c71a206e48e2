"""Built from the orders, served through the API: the reason with every item, never the product
itself, nothing archived, nothing the destination cannot receive, nothing already in the cart,
short lists filled from the best sellers; a rebuild switches whole, and the worker's job
sleeps while the shop is quiet."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.db import utcnow
from mercato.recommendations import service
from mercato.recommendations.store import EXTRA, LISTS, Item, current_version, served, write
from tests.fulfilment.conftest import assert_problem
from tests.recommendations.conftest import Shop, make_shop, runtime_of, sell, sell_history


async def _recs(
    client: httpx.AsyncClient, product_id: str, headers: dict[str, str] | None = None, **params: Any
) -> list[dict[str, Any]]:
    r = await client.get(
        f"/api/products/{product_id}/recommendations", params=params, headers=headers or {}
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


@pytest.fixture
async def shop(app: FastAPI) -> Shop:
    db = runtime_of(app).db
    shop = await make_shop(db)
    await sell_history(db, shop)
    await service.build(runtime_of(app))
    return shop


async def test_bought_together_gives_the_rule_and_drops_what_cannot_be_offered(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    name = {pid: n for n, pid in shop.product.items()}
    items = await _recs(client, shop.product["kettle"], kind="bought_together", country="DE")
    shown = [name[i["id"]] for i in items]
    assert shown[0] == "teapot"
    first = items[0]
    # 4 of 12 baskets hold both; 7 hold the kettle; 4 the teapot.
    assert first["reason"] == "rule"
    assert first["support"] == pytest.approx(4 / 12, abs=1e-6)
    assert first["confidence"] == pytest.approx(4 / 7, abs=1e-6)
    assert first["lift"] == pytest.approx((4 / 7) / (4 / 12), abs=1e-6)
    assert "kettle" not in shown  # never itself
    assert "gone" not in shown  # archived
    assert "lyon" not in shown  # only Lyon holds it, and Lyon does not ship to Germany
    assert {"mugs", "filters"} <= set(shown)
    # Filled up from the best sellers: the tray was never bought with the kettle.
    assert {i["reason"] for i in items if name[i["id"]] == "tray"} == {"popular"}
    in_france = [
        name[i["id"]]
        for i in await _recs(client, shop.product["kettle"], kind="bought_together", country="FR")
    ]
    assert in_france == ["lyon"]  # the only product a French shopper can receive


async def test_also_bought_is_similarity_and_respects_the_limit(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    items = await _recs(client, shop.product["teapot"], kind="also_bought", limit=2, country="DE")
    assert len(items) == 2
    assert items[0]["id"] == shop.product["kettle"] and items[0]["reason"] == "similar"
    assert items[0]["score"] > 0 and items[0]["lift"] is None
    assert shop.product["teapot"] not in {i["id"] for i in items}


async def test_what_is_in_the_cart_is_not_offered_again(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    r = await client.post(
        "/api/cart/items", json={"variant_id": shop.variant["teapot"], "quantity": 1}
    )
    assert r.status_code == 201, r.text
    token = r.json()["cart_token"]
    items = await _recs(
        client,
        shop.product["kettle"],
        headers={"x-cart-token": token},
        kind="bought_together",
        country="DE",
    )
    assert shop.product["teapot"] not in {i["id"] for i in items}
    assert items  # the rest is still there


async def test_unknown_or_archived_products_are_not_found(
    client: httpx.AsyncClient, shop: Shop
) -> None:
    for product_id in ("prd_nope", shop.product["gone"]):
        r = await client.get(f"/api/products/{product_id}/recommendations")
        assert_problem(r, 404, "not_found")
    r = await client.get(
        f"/api/products/{shop.product['kettle']}/recommendations", params={"kind": "for_you"}
    )
    assert r.status_code == 422
    assert "kind" in r.text


async def test_a_rebuild_switches_every_list_at_once(
    app: FastAPI, client: httpx.AsyncClient, shop: Shop
) -> None:
    runtime = runtime_of(app)
    before = await served(runtime)
    for i in range(5):
        await sell(runtime.db, shop, f"late{i}", "kettle", "filters")
    stats = await service.build(runtime)
    assert stats.version == before.version + 1
    after = await served(runtime)  # this process notices the new version
    assert after.version == stats.version
    assert (
        after.of("bought_together", shop.product["kettle"])[0].product_id == shop.product["filters"]
    )
    async with runtime.db.transaction() as uow:
        versions = (await uow.execute(select(func.distinct(LISTS.c.version)))).scalars().all()
    assert versions == [stats.version]  # the old rows went with the switch
    # A build that fails half-way leaves the served lists as they were.
    with pytest.raises(RuntimeError):
        async with runtime.db.transaction() as uow:
            await write(
                uow,
                [(("popular", ""), [Item("x", 1.0)])],
                built_at=utcnow(),
                orders_seen=0,
                model="itemknn",
            )
            raise RuntimeError("crash before the commit")
    async with runtime.db.transaction() as uow:
        assert await current_version(uow) == stats.version
    items = await _recs(client, shop.product["kettle"], kind="bought_together", country="DE")
    assert items[0]["id"] == shop.product["filters"]


async def test_while_one_request_loads_a_new_build_the_others_serve_the_held_one(
    app: FastAPI, shop: Shop
) -> None:
    runtime = runtime_of(app)
    held = await served(runtime)
    for i in range(5):
        await sell(runtime.db, shop, f"late{i}", "kettle", "filters")
    stats = await service.build(runtime)
    loaded = runtime.extras[EXTRA]
    async with loaded.lock:  # a request is loading the new build
        assert (await served(runtime)).version == held.version  # no one waits for it
    assert (await served(runtime)).version == stats.version  # the next look switches


async def test_the_worker_rebuilds_only_once_enough_orders_arrived(
    app: FastAPI, shop: Shop
) -> None:
    runtime = runtime_of(app)  # the fixture asks for 3 new orders
    version = (await served(runtime)).version
    assert await service.rebuild_if_due(runtime) == 0  # nothing since the build
    await sell(runtime.db, shop, "n1", "kettle", "teapot")
    await sell(runtime.db, shop, "n2", "kettle", "teapot")
    assert await service.rebuild_if_due(runtime) == 0
    await sell(runtime.db, shop, "n3", "kettle", "teapot")
    assert await service.rebuild_if_due(runtime) == 1
    assert (await served(runtime)).version == version + 1


async def test_a_shop_without_orders_serves_empty_lists(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    shop = await make_shop(runtime_of(app).db)
    assert await _recs(client, shop.product["kettle"]) == []
    stats = await service.build(runtime_of(app))
    assert (stats.orders, stats.rules) == (0, 0)
    assert await _recs(client, shop.product["kettle"], kind="bought_together") == []


async def test_concurrent_builds_queue_and_one_version_is_left(app: FastAPI) -> None:
    runtime = runtime_of(app)
    shop = await make_shop(runtime.db)
    await sell_history(runtime.db, shop)
    first, second = await asyncio.gather(service.build(runtime), service.build(runtime))
    assert sorted((first.version, second.version)) == [1, 2]
    async with runtime.db.transaction() as uow:
        assert await current_version(uow) == 2
        versions = (await uow.execute(select(func.distinct(LISTS.c.version)))).scalars().all()
    assert versions == [2]
