"""``GET /api/products`` on the index: the catalog's own listing tests, run with an index that
the worker keeps fresh, must pass unchanged (and without the catalog query answering)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import tests.catalog.test_listing as catalog_listing
from mercato.catalog import service as catalog
from tests.catalog.conftest import SmallCatalog, small_catalog  # noqa: F401
from tests.search.conftest import reindex, sync_search


@pytest.fixture
async def catalog_queries(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The cursors of the listings the catalog query answered (it should not, mostly)."""
    calls: list[str | None] = []
    original = catalog.list_products

    async def counting(*args: Any, **kwargs: Any) -> catalog.ProductPage:
        calls.append(kwargs.get("cursor"))
        return await original(*args, **kwargs)

    monkeypatch.setattr(catalog, "list_products", counting)
    return calls


@pytest.fixture
async def on_index(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """An index from the start, and every product the tests add reaches it before they list."""
    await reindex(app)
    original = catalog_listing._product

    async def product_then_sync(app_: FastAPI, **kwargs: Any) -> str:
        product_id = await original(app_, **kwargs)
        await sync_search(app_)
        return product_id

    monkeypatch.setattr(catalog_listing, "_product", product_then_sync)
    yield


async def test_list_shape(
    on_index: None,
    catalog_queries: list[str | None],
    app: FastAPI,
    client: httpx.AsyncClient,
    small_catalog: SmallCatalog,  # noqa: F811
) -> None:
    await catalog_listing.test_product_list_shape(app, client, small_catalog)
    assert catalog_queries == []


async def test_drafts_hidden(
    on_index: None,
    catalog_queries: list[str | None],
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
) -> None:
    await catalog_listing.test_drafts_are_hidden_from_shoppers(app, client, staff_headers)
    assert catalog_queries == []


async def test_category_filter(
    on_index: None,
    catalog_queries: list[str | None],
    app: FastAPI,
    client: httpx.AsyncClient,
    small_catalog: SmallCatalog,  # noqa: F811
) -> None:
    await catalog_listing.test_category_filter_includes_descendants(app, client, small_catalog)
    assert catalog_queries == []


async def test_brand_price_attribute_filters(
    on_index: None,
    catalog_queries: list[str | None],
    app: FastAPI,
    client: httpx.AsyncClient,
    small_catalog: SmallCatalog,  # noqa: F811
) -> None:
    await catalog_listing.test_brand_price_and_attribute_filters(app, client, small_catalog)
    assert catalog_queries == []


async def test_keyset_pages_while_products_are_added(
    on_index: None, catalog_queries: list[str | None], app: FastAPI, client: httpx.AsyncClient
) -> None:
    await catalog_listing.test_keyset_pages_never_repeat_or_skip_while_products_are_added(
        app, client
    )
    assert catalog_queries == []


async def test_bad_cursors(
    on_index: None,
    catalog_queries: list[str | None],
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Any,
) -> None:
    await catalog_listing.test_bad_cursors_are_refused(app, client, settings)
    # Only cursors the index did not sign reached the catalog query (which refused them).
    assert catalog_queries and all(c is not None for c in catalog_queries)


async def test_sorts_on_the_index(on_index: None, app: FastAPI, client: httpx.AsyncClient) -> None:
    """The catalog's sort test without price ties: equal prices are ordered by a hash of the
    id on the index (by the id itself in the catalog query); both are stable total orders."""
    prices = [1500, 999, 1501, 20000, 5]
    ids = [await catalog_listing._product(app, variants=[{"price": p}]) for p in prices]
    assert await catalog_listing._ids(client, "sort=newest") == list(reversed(ids))
    by_price = [i for _, i in sorted(zip(prices, ids, strict=True))]
    assert await catalog_listing._ids(client, "sort=price_asc") == by_price
    assert await catalog_listing._ids(client, "sort=price_desc") == list(reversed(by_price))
    for sort in ("newest", "price_asc", "price_desc"):
        assert await catalog_listing._page_through(
            client, f"sort={sort}", 2
        ) == await catalog_listing._ids(client, f"sort={sort}")


async def test_a_catalog_cursor_continues_on_the_catalog_query(
    app: FastAPI, client: httpx.AsyncClient, catalog_queries: list[str | None]
) -> None:
    ids = [await catalog_listing._product(app, title=f"Mug {i}") for i in range(5)]
    first = (await client.get("/api/products?limit=2")).json()  # no index yet
    await reindex(app)  # the index appears while the shopper pages
    seen = [p["id"] for p in first["items"]]
    cursor = first["next_cursor"]
    while cursor:
        page = (await client.get(f"/api/products?limit=2&cursor={cursor}")).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
    assert seen == list(reversed(ids))
    assert len(catalog_queries) == 3  # the first page and the two it continued
    await client.get("/api/products?limit=2")
    assert len(catalog_queries) == 3  # a new browse starts on the index
