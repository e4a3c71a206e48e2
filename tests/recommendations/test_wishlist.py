"""The wishlist API: a signed-in customer saves a product (or one size of it), once however
often they save it, lists it with today's price and stock for their destination, and removes
it; unknown and withdrawn products are refused with their own codes, anonymous callers get a
401, and nobody sees or touches another customer's list."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from mercato.catalog import service as catalog
from mercato.recommendations import wishlist
from tests.factories import make_product
from tests.fulfilment.conftest import assert_problem
from tests.recommendations.conftest import runtime_of
from tests.recommendations.signals import (
    fast_password_hashing,  # noqa: F401  (autouse)
    make_customer,
    make_shirt,
    sell_out,
)


async def test_save_is_idempotent_and_lists_price_and_stock(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    shirt = await make_shirt(runtime.db)
    other = await make_shirt(runtime.db, "Wool scarf")
    await sell_out(runtime.db, other.small)
    await sell_out(runtime.db, other.medium)

    first = await client.post(
        "/api/me/wishlist", json={"product_id": shirt.product_id}, headers=ada.headers
    )
    assert first.status_code == 200, first.text
    again = await client.post(
        "/api/me/wishlist",
        json={"product_id": shirt.product_id, "variant_id": shirt.medium},
        headers=ada.headers,
    )
    assert again.status_code == 200, again.text
    assert again.json()["saved_at"] == first.json()["saved_at"]  # the same entry
    r = await client.post(
        "/api/me/wishlist", json={"product_id": other.product_id}, headers=ada.headers
    )
    assert r.status_code == 200, r.text

    listed = await client.get("/api/me/wishlist?country=DE", headers=ada.headers)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["limit"] == wishlist.MAX_ENTRIES
    items = {i["product_id"]: i for i in body["items"]}
    assert [i["product_id"] for i in body["items"]] == [other.product_id, shirt.product_id]
    saved = items[shirt.product_id]
    # Saved twice, kept once, watching the size named last, at that size's price.
    assert saved["variant_id"] == shirt.medium and saved["variant_title"] == "Medium"
    assert saved["price"] == "27.00" and saved["currency"] == "EUR"
    assert saved["in_stock"] and saved["on_sale"] and saved["cart_variant_id"] == shirt.medium
    sold = items[other.product_id]
    assert sold["variant_id"] is None and sold["price"] == "25.00"  # the lowest
    assert not sold["in_stock"] and sold["cart_variant_id"] is None


async def test_remove_and_the_problems(app: FastAPI, client: httpx.AsyncClient) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    shirt = await make_shirt(runtime.db)
    async with runtime.db.transaction() as uow:
        archived, _ = await make_product(uow, title="Old kettle")
        await catalog.archive_product(uow, archived)
        draft, _ = await make_product(uow, title="New kettle", status="draft")
    assert_problem(
        await client.post("/api/me/wishlist", json={"product_id": "prd_nope"}, headers=ada.headers),
        404,
        "not_found",
    )
    for withdrawn in (archived, draft):
        assert_problem(
            await client.post(
                "/api/me/wishlist", json={"product_id": withdrawn}, headers=ada.headers
            ),
            409,
            "product_not_on_sale",
        )
    other = await make_shirt(runtime.db, "Wool scarf")
    assert_problem(
        await client.post(
            "/api/me/wishlist",
            json={"product_id": shirt.product_id, "variant_id": other.small},
            headers=ada.headers,
        ),
        422,
        "unknown_variant",
    )
    r = await client.post(
        "/api/me/wishlist", json={"product_id": shirt.product_id}, headers=ada.headers
    )
    assert r.status_code == 200
    gone = await client.delete(f"/api/me/wishlist/{shirt.product_id}", headers=ada.headers)
    assert gone.status_code == 204, gone.text
    assert_problem(
        await client.delete(f"/api/me/wishlist/{shirt.product_id}", headers=ada.headers),
        404,
        "not_found",
    )
    assert (await client.get("/api/me/wishlist", headers=ada.headers)).json()["items"] == []


async def test_anonymous_callers_get_401(app: FastAPI, client: httpx.AsyncClient) -> None:
    shirt = await make_shirt(runtime_of(app).db)
    for r in (
        await client.get("/api/me/wishlist"),
        await client.post("/api/me/wishlist", json={"product_id": shirt.product_id}),
        await client.delete(f"/api/me/wishlist/{shirt.product_id}"),
    ):
        assert_problem(r, 401, "unauthorized")


async def test_nobody_sees_or_touches_another_customers_list(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    bob = await make_customer(runtime, "bob@example.com")
    shirt = await make_shirt(runtime.db)
    r = await client.post(
        "/api/me/wishlist", json={"product_id": shirt.product_id}, headers=ada.headers
    )
    assert r.status_code == 200
    assert (await client.get("/api/me/wishlist", headers=bob.headers)).json()["items"] == []
    assert_problem(
        await client.delete(f"/api/me/wishlist/{shirt.product_id}", headers=bob.headers),
        404,
        "not_found",
    )
    mine = (await client.get("/api/me/wishlist", headers=ada.headers)).json()["items"]
    assert [i["product_id"] for i in mine] == [shirt.product_id]


async def test_an_archived_product_stays_listed_and_the_list_is_bounded(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_of(app)
    ada = await make_customer(runtime, "ada@example.com")
    monkeypatch.setattr(wishlist, "MAX_ENTRIES", 2)
    shirts = [await make_shirt(runtime.db, f"Shirt {n}") for n in range(3)]
    for shirt in shirts[:2]:
        r = await client.post(
            "/api/me/wishlist", json={"product_id": shirt.product_id}, headers=ada.headers
        )
        assert r.status_code == 200
    full = assert_problem(
        await client.post(
            "/api/me/wishlist", json={"product_id": shirts[2].product_id}, headers=ada.headers
        ),
        409,
        "wishlist_full",
    )
    assert full["limit"] == 2
    # Saving one already saved is no new entry: the full list takes it.
    r = await client.post(
        "/api/me/wishlist", json={"product_id": shirts[0].product_id}, headers=ada.headers
    )
    assert r.status_code == 200
    async with runtime.db.transaction() as uow:
        await catalog.archive_product(uow, shirts[0].product_id)
    items = {
        i["product_id"]: i
        for i in (await client.get("/api/me/wishlist", headers=ada.headers)).json()["items"]
    }
    archived = items[shirts[0].product_id]
    assert archived["title"] == "Shirt 0" and not archived["on_sale"]
    assert not archived["in_stock"] and archived["cart_variant_id"] is None
