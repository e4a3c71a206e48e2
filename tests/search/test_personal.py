"""A signed-in customer's search: the top results re-ordered by the brands and categories they
bought, through the API, on the seeded demo catalog; the matching products, the total and the
facets are a guest's, and guests and explicit sorts are untouched."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.orders import service as orders
from mercato.search import personal, service
from mercato.search.personal import TOP_N
from mercato.web.shop.listing import PAGE_SIZE
from tests.conftest import TEST_PASSWORD, user_headers
from tests.orders.conftest import LineSpec, make_draft
from tests.search.conftest import Truth, all_pages, runtime_of

EMAIL = "fan@example.com"
QUERIES: list[list[tuple[str, str]]] = [
    [("q", "designed")],
    [("q", "material")],
    [("q", "designed"), ("in_stock", "true")],
    [("q", "key facts"), ("min_price", "10"), ("max_price", "300")],
    [("q", "built"), ("category", "home-kitchen")],
]


async def _buy(app: FastAPI, user_id: str, product_ids: Sequence[str]) -> str:
    """A paid order of one unit of each product, as the checkout leaves it."""
    async with runtime_of(app).db.transaction() as uow:
        views = await catalog.get_products(uow, product_ids)
        lines = [
            LineSpec(views[p].variants[0].id, p, 1, 1000, views[p].variants[0].sku)
            for p in product_ids
        ]
        order = await orders.create_order(
            uow, make_draft(user_id=user_id, email=EMAIL, lines=lines)
        )
    return order.id


async def _user_id(app: FastAPI) -> str:
    async with runtime_of(app).db.transaction() as uow:
        user = await identity.get_user_by_email(uow, EMAIL)
    assert user is not None
    return user.id


async def _search(
    client: httpx.AsyncClient, params: Sequence[tuple[str, str]], headers: dict[str, str]
) -> dict[str, Any]:
    r = await client.get("/api/search", params=[*params, ("limit", str(TOP_N))], headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _favourite(shop: dict[str, Truth], ids: Sequence[str]) -> str:
    """A brand with products in the guest's top N, none of them among the first three."""
    first = {shop[i].brand for i in ids[:3]}
    found = Counter(shop[i].brand for i in ids[3:TOP_N] if shop[i].brand not in first)
    brand = next(b for b, _ in found.most_common() if b)
    assert brand is not None
    return brand


@pytest.fixture
async def fan(app: FastAPI, shop: dict[str, Truth]) -> dict[str, str]:
    return await user_headers(app, "customer", EMAIL)


async def test_a_customer_who_bought_a_brand_finds_it_earlier_than_a_guest(
    app: FastAPI, client: httpx.AsyncClient, shop: dict[str, Truth], fan: dict[str, str]
) -> None:
    guest = await _search(client, [("q", "designed")], {})
    guest_ids = [h["id"] for h in guest["hits"]]
    brand = _favourite(shop, guest_ids)
    bought = next(p for p in shop.values() if p.brand == brand and p.id not in guest_ids[:TOP_N])
    before = await _search(client, [("q", "designed")], fan)
    assert before["personalized"] is False  # nothing bought yet: a guest's order
    assert [h["id"] for h in before["hits"]] == guest_ids

    await _buy(app, await _user_id(app), [bought.id])
    # The process keeps a customer's affinities a little while (pages see one order).
    service.forget_affinities(runtime_of(app))
    mine = await _search(client, [("q", "designed")], fan)
    mine_ids = [h["id"] for h in mine["hits"]]

    def first_of_brand(ids: Sequence[str]) -> int:
        return next(i for i, p in enumerate(ids) if shop[p].brand == brand)

    assert mine["personalized"] is True and guest["personalized"] is False
    assert first_of_brand(mine_ids) < first_of_brand(guest_ids)
    assert sorted(mine_ids) == sorted(guest_ids)
    for key in ("total", "facets", "matched"):
        assert mine[key] == guest[key]
    # The guest's answer is the same as before the customer bought anything.
    assert [h["id"] for h in (await _search(client, [("q", "designed")], {}))["hits"]] == guest_ids


@pytest.mark.parametrize("params", QUERIES)
async def test_the_match_the_facets_and_the_pages_are_a_guests(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, Truth],
    fan: dict[str, str],
    params: list[tuple[str, str]],
) -> None:
    brands = Counter(p.brand for p in shop.values() if p.brand)
    favourites = [b for b, _ in brands.most_common(3)]
    await _buy(
        app,
        await _user_id(app),
        [next(p.id for p in shop.values() if p.brand == b) for b in favourites],
    )
    guest_hits, guest_pages = await all_pages(client, "/api/search", params, limit=7)
    client.headers.update(fan)
    mine_hits, mine_pages = await all_pages(client, "/api/search", params, limit=7)
    guest_ids = [h["id"] for h in guest_hits]
    mine_ids = [h["id"] for h in mine_hits]
    assert mine_pages[0]["personalized"] is True
    assert not any(page["personalized"] for page in guest_pages)
    assert len(mine_ids) == len(set(mine_ids)), "a product shown twice"
    assert Counter(mine_ids) == Counter(guest_ids)
    assert mine_ids[TOP_N:] == guest_ids[TOP_N:]
    for guest_page, mine_page in zip(guest_pages, mine_pages, strict=True):
        for key in ("total", "facets", "matched", "showing_results_for", "did_you_mean"):
            assert mine_page[key] == guest_page[key]


async def test_explicit_sorts_browsing_and_the_listing_are_never_reranked(
    app: FastAPI, client: httpx.AsyncClient, shop: dict[str, Truth], fan: dict[str, str]
) -> None:
    brand = Counter(p.brand for p in shop.values() if p.brand).most_common(1)[0][0]
    await _buy(app, await _user_id(app), [next(p.id for p in shop.values() if p.brand == brand)])
    for params in (
        [("q", "designed"), ("sort", "price_asc")],
        [("q", "designed"), ("sort", "newest")],
        [("category", "home-kitchen")],  # browsing: best sellers first
    ):
        guest = await _search(client, params, {})
        mine = await _search(client, params, fan)
        assert mine["personalized"] is False
        assert [h["id"] for h in mine["hits"]] == [h["id"] for h in guest["hits"]]
    listing = "/api/products?category=home-kitchen&limit=50"
    assert (await client.get(listing, headers=fan)).json() == (await client.get(listing)).json()


async def test_a_failing_affinity_read_answers_unpersonalised(
    app: FastAPI,
    client: httpx.AsyncClient,
    shop: dict[str, Truth],
    fan: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(uow: UnitOfWork, user_id: str) -> service.Affinity:
        raise RuntimeError("no affinities today")

    monkeypatch.setattr(personal, "affinity_readers", [broken])
    guest = await _search(client, [("q", "designed")], {})
    mine = await _search(client, [("q", "designed")], fan)
    assert mine["personalized"] is False
    assert mine["hits"] == guest["hits"]


async def test_the_shop_search_page_shows_a_signed_in_customer_their_order(
    app: FastAPI, client: httpx.AsyncClient, shop: dict[str, Truth], fan: dict[str, str]
) -> None:
    guest = await _search(client, [("q", "designed")], {})
    brand = _favourite(shop, [h["id"] for h in guest["hits"]])
    await _buy(app, await _user_id(app), [next(p.id for p in shop.values() if p.brand == brand)])
    mine = await _search(client, [("q", "designed")], fan)
    assert mine["personalized"] is True
    assert [h["id"] for h in mine["hits"]][:PAGE_SIZE] != [h["id"] for h in guest["hits"]][
        :PAGE_SIZE
    ]

    def cards(html: str) -> list[str]:
        return list(dict.fromkeys(re.findall(r'href="/p/([^"]+)"', html)))

    page = await client.get("/search", params={"q": "designed"}, headers={"Accept": "text/html"})
    assert cards(page.text) == [h["id"] for h in guest["hits"]][:PAGE_SIZE]
    r = await client.post("/api/auth/login", json={"email": EMAIL, "password": TEST_PASSWORD})
    assert r.status_code == 200, r.text
    page = await client.get("/search", params={"q": "designed"}, headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert cards(page.text) == [h["id"] for h in mine["hits"]][:PAGE_SIZE]
