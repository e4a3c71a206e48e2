"""The page cache behind the shop's pages: a page read twice is answered from it, and an edit,
a stock change or an index commit shows on the next page once the worker delivered it; several
processes sharing one Redis see each other's entries and invalidations; memory stays bounded.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from mercato import cache
from mercato.catalog import service as catalog
from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from mercato.search import service as search
from mercato.settings import Settings
from tests.factories import make_product
from tests.search.conftest import reindex, runtime_of, sync

HTML = {"accept": "text/html"}


def _counts(runtime: Runtime, area: str) -> tuple[int, int]:
    found = cache.cache_stats(runtime).get(area, {"hits": 0, "misses": 0})
    return found["hits"], found["misses"]


async def _stocked_kettle(runtime: Runtime) -> tuple[str, str]:
    async with runtime.db.transaction() as uow:
        await inventory.create_warehouse(uow, code="PC", name="Cache", countries=["DE"])
        product_id, [variant_id] = await make_product(uow, title="Quokka kettle")
    async with runtime.db.transaction() as uow:
        await inventory.receive(uow, variant_id, "PC", 40)
    return product_id, variant_id


async def _page(client: httpx.AsyncClient, path: str) -> str:
    r = await client.get(path, headers=HTML)
    assert r.status_code == 200, r.text
    return r.text


async def test_product_page_and_listing_are_cached_until_a_change_is_delivered(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    product_id, variant_id = await _stocked_kettle(runtime)
    await reindex(app)
    page = f"/p/{product_id}"

    assert "Quokka kettle" in await _page(client, page)
    hits, misses = _counts(runtime, "product")
    assert "Quokka kettle" in await _page(client, page)
    assert _counts(runtime, "product") == (hits + 1, misses)
    assert "Quokka kettle" in await _page(client, "/search?q=quokka")
    hits, misses = _counts(runtime, "listing")
    assert "Quokka kettle" in await _page(client, "/search?q=quokka")
    assert _counts(runtime, "listing") == (hits + 1, misses)

    # An edit: the cached copy answers until the worker delivers the change, then the next
    # page (and the listing, from the index's new generation) shows it.
    async with runtime.db.transaction() as uow:
        await catalog.update_product(uow, product_id, catalog.ProductChanges(title="Wombat jug"))
    assert "Quokka kettle" in await _page(client, page)
    await sync(app)
    html = await _page(client, page)
    assert "Wombat jug" in html and "Quokka kettle" not in html
    assert "Wombat jug" in await _page(client, "/search?q=wombat")

    # Sold out: the next page says so.
    assert 'data-testid="stock-hint">In stock' in await _page(client, page)
    async with runtime.db.transaction() as uow:
        await inventory.adjust(uow, variant_id, "PC", -40, "count")
    await sync(app)
    assert 'data-testid="stock-hint">Out of stock' in await _page(client, page)


async def test_processes_sharing_redis_see_each_others_entries_and_invalidations(
    app: FastAPI, settings: Settings, backend: str
) -> None:
    if settings.redis_url is None:
        pytest.skip("Redis runs with the postgresql backend")
    first = runtime_of(app)
    product_id, variant_id = await _stocked_kettle(first)
    second = Runtime.from_settings(settings)
    try:

        async def stock_of(runtime: Runtime) -> int:
            async with runtime.db.transaction() as uow:
                detail = await search.product_detail(uow, runtime, product_id, threshold=5)
            assert detail is not None
            return detail.choices[0].available

        assert await stock_of(first) == 40
        assert await stock_of(second) == 40
        assert _counts(second, "product") == (1, 0)  # the first process's entry
        async with first.db.transaction() as uow:
            await inventory.adjust(uow, variant_id, "PC", -15, "count")
        await sync(app)  # the worker of the first process bumps the product's generation
        assert await stock_of(second) == 25
        assert _counts(second, "product") == (1, 1)
    finally:
        await second.close()


async def test_memory_cache_is_bounded_and_forgets_by_tag() -> None:
    memory = cache.MemoryCache(ttl_seconds=60, max_entries=2)
    loads: list[str] = []

    async def read(key: str, tag: str) -> str:
        async def load() -> str:
            loads.append(key)
            return key.upper()

        return await memory.read_through("t", key, (tag,), load)

    for key in ("a", "b", "a", "c", "b"):
        await read(key, "x")
    assert loads == ["a", "b", "c", "b"] and len(memory) == 2  # "b" was the least recent
    await memory.bump("x")
    await read("c", "x")
    assert loads[-1] == "c"
