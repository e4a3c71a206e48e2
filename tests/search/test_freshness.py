"""Keeping the index fresh from the outbox, rebuilding it while searches go on, and losing
nothing when it is deleted or when the worker dies between a delivery and a commit."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import httpx
from fastapi import FastAPI

from mercato.events import dispatcher
from mercato.inventory import service as inventory
from mercato.modules import wire
from mercato.search import service
from tests.factories import make_category, make_product
from tests.search.conftest import reindex, runtime_of, sync


async def _search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/search", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _titles(client: httpx.AsyncClient, q: str) -> set[str]:
    return {h["title"] for h in (await _search(client, q=q))["hits"]}


async def _create(client: httpx.AsyncClient, headers: dict[str, str], category_id: str) -> str:
    r = await client.post(
        "/api/admin/products",
        json={
            "title": "Zephyr teapot",
            "category_id": category_id,
            "status": "active",
            "variants": [{"sku": "ZT-1", "price": "24.50"}],
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    product_id: str = r.json()["id"]
    return product_id


async def test_changes_are_searchable_after_one_worker_pass(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    async with runtime_of(app).db.transaction() as session:
        category = await make_category(session, "Brewing")
        await inventory.create_warehouse(session, code="BER", name="Berlin", countries=["DE"])
    await reindex(app)
    product_id = await _create(client, staff_headers, category.id)
    assert await _titles(client, "teapot") == set()
    await sync(app)
    [hit] = (await _search(client, q="teapot"))["hits"]
    assert hit["id"] == product_id and hit["min_price"] == "24.50" and hit["in_stock"] is False

    # Stock arrives: the product is in stock as soon as the worker passed.
    async with runtime_of(app).db.transaction() as conn:
        await inventory.receive(conn, "ZT-1", "BER", 3)
    await sync(app)
    assert (await _search(client, q="teapot", in_stock="true"))["total"] == 1

    r = await client.patch(
        f"/api/admin/products/{product_id}", json={"title": "Zephyr kettle"}, headers=staff_headers
    )
    assert r.status_code == 200
    await sync(app)
    assert await _titles(client, "teapot") == set()
    assert await _titles(client, "kettle") == {"Zephyr kettle"}

    variant_id = r.json()["variants"][0]["id"]
    r = await client.patch(
        f"/api/admin/variants/{variant_id}", json={"price": "19.00"}, headers=staff_headers
    )
    assert r.status_code == 200
    await sync(app)
    assert (await _search(client, q="kettle"))["hits"][0]["min_price"] == "19.00"

    # A renamed category is searchable (and faceted) under its new name.
    r = await client.patch(
        f"/api/admin/categories/{category.id}", json={"name": "Tea things"}, headers=staff_headers
    )
    assert r.status_code == 200
    await sync(app)
    body = await _search(client, q="tea things")
    assert body["total"] == 1 and body["facets"]["category"][0]["label"] == "Tea things"

    r = await client.post(f"/api/admin/products/{product_id}/archive", headers=staff_headers)
    assert r.status_code == 200
    await sync(app)
    assert await _titles(client, "kettle") == set()


async def test_a_change_delivered_but_not_committed_is_replayed(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await reindex(app)
    await sync(app)  # the writer is open and has replayed what there was
    async with runtime_of(app).db.transaction() as session:
        await make_product(session, title="Replayed teapot")
    wire()
    await dispatcher.dispatch_once(runtime_of(app))  # delivered and recorded...
    service.PENDING.take()  # ...then the process died before committing
    service.engine_for(runtime_of(app)).close_writer()
    assert await _titles(client, "teapot") == set()
    await sync(app)  # a new writer replays the recent deliveries
    assert await _titles(client, "teapot") == {"Replayed teapot"}


async def test_reindex_switches_atomically_while_searches_continue(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with runtime_of(app).db.transaction() as session:
        for i in range(60):
            await make_product(session, title=f"Acme kettle {i}", brand="Acme")
    first = await reindex(app)
    engine = service.engine_for(runtime_of(app))
    before = await _search(client, q="kettle", limit=100)
    assert before["total"] == 60

    answers: list[int] = []
    rebuild = asyncio.create_task(reindex(app))
    while not rebuild.done():
        body = await _search(client, q="kettle", limit=100)
        answers.append(body["total"])
        await asyncio.sleep(0)
    second = await rebuild
    assert answers and set(answers) == {60}
    assert second.version != first.version
    assert engine.store.current() == second.version
    after = await _search(client, q="kettle", limit=100)
    assert {h["id"] for h in after["hits"]} == {h["id"] for h in before["hits"]}

    third = await reindex(app)
    assert engine.store.versions() == sorted([second.version, third.version])


async def test_deleting_the_index_loses_nothing(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    async with runtime_of(app).db.transaction() as session:
        for i in range(8):
            await make_product(session, title=f"Nordhaven mug {i}", brand="Nordhaven")
    await reindex(app)
    before = await _search(client, q="mug", sort="price_asc", limit=100)
    listing = (await client.get("/api/products")).json()["items"]
    engine = service.engine_for(runtime_of(app))
    shutil.rmtree(engine.root)
    assert engine.reader(fresh=True) is None  # each process looks again within 0.1 s
    r = await client.get("/api/search", params={"q": "mug"})
    assert r.status_code == 503
    assert (await client.get("/api/products")).json()["items"] == listing  # the catalog answers
    await reindex(app)
    after = await _search(client, q="mug", sort="price_asc", limit=100)
    assert after["hits"] == before["hits"] and after["facets"] == before["facets"]
    r = await client.get("/api/admin/search/status", headers=staff_headers)
    assert r.status_code == 200 and r.json()["documents"] == 8 and r.json()["built"] is True


async def test_the_one_process_default_builds_its_own_index(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with runtime_of(app).db.transaction() as session:
        await make_product(session, title="Bootstrapped teapot")
    assert await service.sync_index(runtime_of(app), bootstrap=False) == 0
    assert (await client.get("/api/search")).status_code == 503
    assert await service.sync_index(runtime_of(app), bootstrap=True) == 1
    assert await _titles(client, "teapot") == {"Bootstrapped teapot"}
