"""Public browsing: filters, sorts, keyset pages (also while products are being added)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from itsdangerous import URLSafeSerializer

from mercato.runtime import Runtime
from tests.catalog.conftest import SmallCatalog, row_counts
from tests.catalog.test_admin_api import assert_problem
from tests.factories import make_category, make_product


async def _product(app: FastAPI, **kwargs: Any) -> str:
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        product_id, _ = await make_product(session, **kwargs)
    return product_id


async def _ids(client: httpx.AsyncClient, query: str) -> list[str]:
    r = await client.get(f"/api/products?{query}")
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()["items"]]


async def test_product_list_shape(
    app: FastAPI, client: httpx.AsyncClient, small_catalog: SmallCatalog
) -> None:
    pid = await _product(
        app,
        title="Acme kettle",
        brand="Acme",
        category_slug="kettles",
        attributes={"wattage": "2200"},
        variants=[
            {"sku": "K-1", "price": 1999, "compare_at": 2499, "options": {"colour": "red"}},
            {"sku": "K-2", "price": 2105, "options": {"colour": "blue"}},
            {"sku": "K-3", "price": 999, "active": False},
        ],
    )
    await _product(app, title="A draft", status="draft", category_slug="kettles")
    r = await client.get("/api/products?limit=5")
    assert r.status_code == 200
    body = r.json()
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert item["id"] == pid
    assert item["min_price"] == "19.99" and item["max_price"] == "21.05"
    assert item["currency"] == "EUR"
    assert item["brand"]["slug"] == "acme"
    assert item["category"] == {
        "id": small_catalog.kettles,
        "name": "Kettles",
        "slug": "kettles",
        "path": "home-kitchen/kettles",
    }
    assert item["attributes"] == {"wattage": "2200"}
    variants = item["variants"]
    assert [v["sku"] for v in variants] == ["K-1", "K-2"]  # the inactive one is not offered
    assert variants[0]["price"] == "19.99"
    assert variants[0]["compare_at_price"] == "24.99"
    assert variants[0]["options"] == {"colour": "red"}
    assert variants[1]["compare_at_price"] is None

    detail = (await client.get(f"/api/products/{pid}")).json()
    assert detail["description"] == ""
    assert [v["sku"] for v in detail["variants"]] == ["K-1", "K-2"]


async def test_drafts_are_hidden_from_shoppers(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    draft = await _product(app, status="draft")
    assert_problem(await client.get(f"/api/products/{draft}"), 404, "not_found")
    assert_problem(await client.get("/api/products/prd_unknown"), 404, "not_found")
    r = await client.get(f"/api/products/{draft}", headers=staff_headers)
    assert r.status_code == 200 and r.json()["status"] == "draft"
    assert await _ids(client, "") == []


async def test_category_filter_includes_descendants(
    app: FastAPI, client: httpx.AsyncClient, small_catalog: SmallCatalog
) -> None:
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        # A sibling whose path shares a prefix must not leak into "audio".
        await make_category(session, "Audiobooks", slug="audiobooks")
    headphones = await _product(app, title="Headphones", category_slug="headphones")
    audio = await _product(app, title="Speaker", category_slug="audio")
    book = await _product(app, title="Audiobook", category_slug="audiobooks")
    kettle = await _product(app, title="Kettle", category_slug="kettles")
    assert set(await _ids(client, "category=electronics")) == {headphones, audio}
    assert set(await _ids(client, "category=audio")) == {headphones, audio}
    assert set(await _ids(client, "category=headphones")) == {headphones}
    assert set(await _ids(client, "category=home-kitchen")) == {kettle}
    assert set(await _ids(client, "category=audiobooks")) == {book}
    assert_problem(
        await client.get("/api/products?category=nope"), 422, "unknown_category", "category"
    )


async def test_brand_price_and_attribute_filters(
    app: FastAPI, client: httpx.AsyncClient, small_catalog: SmallCatalog
) -> None:
    red_acme = await _product(
        app,
        brand="Acme",
        attributes={"colour": "red", "size": "M"},
        variants=[{"price": 1000}, {"price": 5000}],
    )
    blue_acme = await _product(
        app, brand="Acme", attributes={"colour": "blue", "size": "M"}, variants=[{"price": 2550}]
    )
    red_nord = await _product(
        app, brand="Nordhaven", attributes={"colour": "red", "size": "L"}, variants=[{"price": 999}]
    )
    plain = await _product(app, variants=[{"price": 4000}])
    assert set(await _ids(client, "brand=acme")) == {red_acme, blue_acme}
    assert set(await _ids(client, "brand=nordhaven")) == {red_nord}
    assert_problem(await client.get("/api/products?brand=nope"), 422, "unknown_brand", "brand")

    # The price range applies to the "from" price (the cheapest active variant).
    assert set(await _ids(client, "min_price=10.00")) == {red_acme, blue_acme, plain}
    assert set(await _ids(client, "min_price=10&max_price=25.50")) == {red_acme, blue_acme}
    assert set(await _ids(client, "max_price=9.99")) == {red_nord}
    assert set(await _ids(client, "min_price=10.00&currency=USD")) == set()

    assert set(await _ids(client, "attr.colour=red")) == {red_acme, red_nord}
    assert set(await _ids(client, "attr.colour=red&attr.size=M")) == {red_acme}
    assert set(await _ids(client, "attr.colour=red&attr.colour=blue")) == {
        red_acme,
        blue_acme,
        red_nord,
    }
    assert set(await _ids(client, "attr.colour=green")) == set()
    assert set(await _ids(client, "brand=acme&attr.size=M&max_price=20")) == {red_acme}

    before = await row_counts(app)
    # Amounts that read well but break a rule (the currency's decimals, an upside-down range)
    # have a code of their own, as on the search.
    for query, field, code in [
        ("min_price=1.001", "min_price", "invalid_price_range"),
        ("min_price=20&max_price=10", "max_price", "invalid_price_range"),
    ]:
        assert_problem(await client.get(f"/api/products?{query}"), 422, code, field)
    for query, field in [
        ("min_price=-1", "min_price"),
        ("min_price=ten", "min_price"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("sort=cheapest", "sort"),
        ("attr.Bad-Name=x", "attr.Bad-Name"),
        ("attr.colour=" + "x" * 201, "attr.colour"),
        ("category=" + "c" * 81, "category"),
    ]:
        assert_problem(await client.get(f"/api/products?{query}"), 422, "validation_error", field)
    assert await row_counts(app) == before


async def test_sorts(app: FastAPI, client: httpx.AsyncClient) -> None:
    prices = [1500, 999, 1500, 20000, 5]
    ids = [await _product(app, variants=[{"price": p}]) for p in prices]
    newest = await _ids(client, "sort=newest")
    assert newest == list(reversed(ids))
    assert await _ids(client, "") == newest
    by_price = sorted(zip(prices, ids, strict=True))
    assert await _ids(client, "sort=price_asc") == [i for _, i in by_price]
    assert await _ids(client, "sort=price_desc") == [i for _, i in reversed(by_price)]
    # The same holds across pages of two.
    for sort in ("newest", "price_asc", "price_desc"):
        assert await _page_through(client, f"sort={sort}", 2) == await _ids(client, f"sort={sort}")


async def _page_through(client: httpx.AsyncClient, query: str, limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params = f"{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        r = await client.get(f"/api/products?{params}")
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= limit
        seen.extend(p["id"] for p in body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


async def _writer(app: FastAPI, pages: asyncio.Queue[bool], done: asyncio.Queue[int]) -> int:
    """Another task adds two products after every page the shopper reads; returns how many."""
    n = 0
    while await pages.get():
        for _ in range(2):
            n += 1
            await _product(app, title=f"New {n}", variants=[{"price": (n * 53) % 700}])
        done.put_nowait(n)
    return n


async def test_keyset_pages_never_repeat_or_skip_while_products_are_added(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    existing = [
        await _product(app, title=f"Existing {i}", variants=[{"price": 100 + (i * 37) % 500}])
        for i in range(30)
    ]
    for sort in ("newest", "price_asc", "price_desc"):
        pages: asyncio.Queue[bool] = asyncio.Queue()
        done: asyncio.Queue[int] = asyncio.Queue()
        writer = asyncio.create_task(_writer(app, pages, done))
        seen: list[str] = []
        cursor: str | None = None
        page_count = 0
        while True:
            params = f"sort={sort}&limit=7" + (f"&cursor={cursor}" if cursor else "")
            r = await client.get(f"/api/products?{params}")
            assert r.status_code == 200, r.text
            body = r.json()
            seen.extend(p["id"] for p in body["items"])
            cursor = body["next_cursor"]
            page_count += 1
            if cursor is None:
                break
            pages.put_nowait(True)
            await done.get()  # the new products are committed before the next page is read
        pages.put_nowait(False)
        inserted = await writer
        assert page_count >= 5 and inserted >= 8
        assert len(seen) == len(set(seen)), f"{sort}: a product was repeated"
        assert set(existing) <= set(seen), f"{sort}: a pre-existing product was skipped"


async def test_bad_cursors_are_refused(
    app: FastAPI, client: httpx.AsyncClient, settings: Any
) -> None:
    for _ in range(3):
        await _product(app)
    body = (await client.get("/api/products?limit=1")).json()
    cursor = body["next_cursor"]
    assert cursor
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    foreign = URLSafeSerializer("another-secret", salt="catalog-cursor").dumps(
        {"s": "newest", "k": "2026-01-01T00:00:00+00:00", "i": "prd_x"}
    )
    ours = URLSafeSerializer(settings.secret_key, salt="catalog-cursor")
    wrong_shape = ours.dumps({"s": "newest", "k": 5, "i": "prd_x"})
    naive_time = ours.dumps({"s": "newest", "k": "2026-01-01T00:00:00", "i": "prd_x"})
    for query in (
        f"cursor={tampered}",
        f"cursor={foreign}",
        "cursor=garbage",
        f"cursor={wrong_shape}",
        f"cursor={naive_time}",
        f"sort=price_asc&cursor={cursor}",  # issued for another sort
    ):
        assert_problem(await client.get(f"/api/products?{query}"), 400, "invalid_cursor")
    r = await client.get(f"/api/products?limit=1&cursor={cursor}")
    assert r.status_code == 200 and len(r.json()["items"]) == 1
