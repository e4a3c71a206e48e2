"""Availability where the shopper is: a product is in stock for a country when a warehouse
shipping there holds units of one of its variants. Search hits, the in-stock filter, its facet
count, the ranking's stock bonus and the product listing all answer for the destination, stay
exact against brute force over the database, and follow stock as it moves."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from mercato.checkout import service as checkout
from mercato.inventory import service as inventory
from mercato.search import service
from mercato.search.engine import SCHEMA_VERSION, SearchEngine
from mercato.settings import Settings
from mercato.web.deps import DELIVER_TO_COOKIE
from tests.factories import make_category, make_product
from tests.search.conftest import (
    all_pages,
    assert_problem,
    reindex,
    runtime_of,
    sync_search,
    truth,
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # No demo sales figures: their ranking bonus would blur the stock bonus's.
    return settings.model_copy(update={"demo_mode": False})


HTML = {"accept": "text/html"}
BERLIN = ["AT", "DE"]
LYON = ["ES", "FR", "IT"]
SERVED = ["AT", "DE", "ES", "FR", "IT"]


async def _shop(app: FastAPI) -> dict[str, str]:
    """Berlin ships to Germany and Austria, Lyon to France, Spain and Italy; three lamps, one
    stocked only in Lyon, one only in Berlin, one nowhere. Returns variant ids by lamp."""
    async with runtime_of(app).db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=BERLIN)
        await inventory.create_warehouse(uow, code="LYS", name="Lyon", countries=LYON)
        await checkout.create_zone(uow, name="Europe", countries=SERVED)
        await make_category(uow, "Lighting")
        variants = {}
        for name in ("lyon", "berlin", "nowhere"):
            _, [variant] = await make_product(
                uow,
                title=f"{name.title()} desk lamp",
                category_slug="lighting",
                variants=[{"sku": f"LAMP-{name.upper()}", "price": 4900}],
            )
            variants[name] = variant
        await inventory.receive(uow, "LAMP-LYON", "LYS", 2)
        await inventory.receive(uow, "LAMP-BERLIN", "BER", 5)
    await reindex(app)
    return variants


async def _search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/search", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _stocked(client: httpx.AsyncClient, country: str | None) -> dict[str, bool]:
    """Each lamp's ``in_stock`` in search hits for ``country`` (None: the default)."""
    params = {"q": "lamp"} | ({"country": country} if country else {})
    return {
        h["title"].split()[0].lower(): h["in_stock"]
        for h in (await _search(client, **params))["hits"]
    }


async def _in_stock_titles(client: httpx.AsyncClient, country: str, in_stock: bool) -> set[str]:
    body = await _search(client, q="lamp", country=country, in_stock=str(in_stock).lower())
    return {h["title"].split()[0].lower() for h in body["hits"]}


async def _listed(client: httpx.AsyncClient, country: str) -> dict[str, bool]:
    r = await client.get("/api/products", params={"category": "lighting", "country": country})
    assert r.status_code == 200, r.text
    return {p["title"].split()[0].lower(): p["in_stock"] for p in r.json()["items"]}


async def test_stock_in_lyon_is_in_stock_for_france_and_not_for_germany(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await _shop(app)
    assert await _stocked(client, "FR") == {"lyon": True, "berlin": False, "nowhere": False}
    assert await _stocked(client, "DE") == {"lyon": False, "berlin": True, "nowhere": False}
    assert await _stocked(client, None) == await _stocked(client, "DE")  # the shop's default
    # A hit whose units lie only where the destination is not served says so.
    hits = (await _search(client, q="lamp", country="DE"))["hits"]
    assert {h["title"].split()[0].lower(): h["available_elsewhere"] for h in hits} == {
        "lyon": True,
        "berlin": False,
        "nowhere": False,
    }

    assert await _in_stock_titles(client, "FR", True) == {"lyon"}
    assert await _in_stock_titles(client, "FR", False) == {"berlin", "nowhere"}
    assert await _in_stock_titles(client, "de", True) == {"berlin"}
    assert await _in_stock_titles(client, "DE", False) == {"lyon", "nowhere"}

    for country, stocked in (("FR", 1), ("DE", 1)):
        facets = (await _search(client, q="lamp", country=country))["facets"]
        assert facets["in_stock"] == {"in_stock": stocked, "out_of_stock": 3 - stocked}
    # Browsing (the cached facet counts) answers per destination too.
    for country, title in (("FR", "Lyon desk lamp"), ("DE", "Berlin desk lamp")):
        body = await _search(client, country=country, in_stock="true")
        assert [h["title"] for h in body["hits"]] == [title]
        assert body["facets"]["in_stock"] == {"in_stock": 1, "out_of_stock": 0}

    assert await _listed(client, "FR") == {"lyon": True, "berlin": False, "nowhere": False}
    assert await _listed(client, "DE") == {"lyon": False, "berlin": True, "nowhere": False}


async def test_a_country_the_shop_does_not_serve_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await _shop(app)
    for path in ("/api/search", "/api/products"):
        body = assert_problem(
            await client.get(path, params={"country": "GB"}), 422, "country_not_served"
        )
        assert body["served_countries"] == SERVED


async def test_stock_in_reach_ranks_first(app: FastAPI, client: httpx.AsyncClient) -> None:
    """The default ranking's stock bonus is for the destination: equally relevant lamps come
    out in stock there first."""
    await _shop(app)
    order = {
        country: [
            h["title"].split()[0].lower()
            for h in (await _search(client, q="desk lamp", country=country))["hits"]
        ]
        for country in ("FR", "DE")
    }
    assert order["FR"][0] == "lyon" and order["DE"][0] == "berlin"


async def test_moving_stock_changes_the_answer_once_the_index_syncs(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    variants = await _shop(app)
    db = runtime_of(app).db

    # Goods received in Berlin: the Lyon lamp is now in stock for Germany too.
    async with db.transaction() as uow:
        await inventory.receive(uow, "LAMP-LYON", "BER", 1)
    await sync_search(app)
    assert (await _stocked(client, "DE"))["lyon"] is True
    assert await _listed(client, "DE") == {"lyon": True, "berlin": True, "nowhere": False}

    # The last units in Lyon are sold: France has none left, Germany still has Berlin's.
    async with db.transaction() as uow:
        await inventory.reserve(uow, "order-1", [(variants["lyon"], 2)], "FR")
        await inventory.commit(uow, "order-1")
    await sync_search(app)
    assert (await _stocked(client, "FR"))["lyon"] is False
    assert (await _stocked(client, "DE"))["lyon"] is True
    assert await _in_stock_titles(client, "FR", True) == set()
    facets = (await _search(client, q="lamp", country="FR"))["facets"]
    assert facets["in_stock"] == {"in_stock": 0, "out_of_stock": 3}

    # A hold (a checkout under way) takes the units too, and giving it back returns them.
    async with db.transaction() as uow:
        await inventory.reserve(uow, "cart-1", [(variants["berlin"], 5)], "DE")
    await sync_search(app)
    assert (await _stocked(client, "DE"))["berlin"] is False
    async with db.transaction() as uow:
        await inventory.release(uow, "cart-1")
    await sync_search(app)
    assert (await _stocked(client, "DE"))["berlin"] is True


async def test_a_warehouse_shipping_somewhere_new_needs_no_rebuild(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """The index says where the units lie, the search asks which warehouses ship where: when
    Berlin starts shipping to France, France sees its stock without a reindex."""
    await _shop(app)
    assert (await _stocked(client, "FR"))["berlin"] is False
    async with runtime_of(app).db.transaction() as uow:
        await uow.execute(
            update(inventory.WAREHOUSES)
            .where(inventory.WAREHOUSES.c.code == "BER")
            .values(countries=[*BERLIN, "FR"])
        )
    service.forget_warehouses()  # what WAREHOUSE_TTL does across processes
    assert await _stocked(client, "FR") == {"lyon": True, "berlin": True, "nowhere": False}
    assert await _in_stock_titles(client, "FR", True) == {"lyon", "berlin"}

    # A new warehouse is picked up at once in this process.
    async with runtime_of(app).db.transaction() as uow:
        await inventory.create_warehouse(uow, code="MAD", name="Madrid", countries=["ES"])
        await inventory.receive(uow, "LAMP-NOWHERE", "MAD", 1)
    await sync_search(app)
    assert (await _stocked(client, "ES"))["nowhere"] is True
    assert (await _stocked(client, "DE"))["nowhere"] is False


async def test_an_index_of_the_older_schema_is_rebuilt_by_the_follower(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """An index built before availability was per warehouse cannot answer per destination:
    the worker rebuilds it (even one that leaves building a missing index to ``reindex``)."""
    await _shop(app)
    runtime = runtime_of(app)
    engine = service.engine_for(runtime)
    store = engine.store
    old = store.current()
    assert old is not None
    meta = store.read_meta(old)
    assert meta is not None
    store.write_meta(replace(meta, schema=SCHEMA_VERSION - 1))
    engine.close_writer()
    assert SearchEngine(store).reader() is None  # a process starting now could not read it
    assert await service.sync_index(runtime, bootstrap=False) == 3
    assert store.current() != old
    assert await _stocked(client, "FR") == {"lyon": True, "berlin": False, "nowhere": False}


# --------------------------------------------------------------------------------------------
# Brute force over a randomized catalog


WAREHOUSE_CODES = ("W1", "W2", "W3", "W4")
COUNTRIES = ("AT", "BE", "DE", "ES", "FR", "IT", "NL")


async def _random_shop(app: FastAPI, rng: random.Random) -> list[tuple[str, str]]:
    """Four warehouses shipping to random countries (one to none the shop serves), thirty
    products with one to three variants, units spread at random (some held by carts).
    Returns the (variant id, warehouse code) stock rows."""
    rows: list[tuple[str, str]] = []
    async with runtime_of(app).db.transaction() as uow:
        await checkout.create_zone(uow, name="Europe", countries=list(COUNTRIES))
        # Every country served by one warehouse at least, some by two or three; W4 ships only
        # where the shop does not deliver, so its units are never in stock for anyone.
        shipping: dict[str, set[str]] = {code: set() for code in WAREHOUSE_CODES[:3]}
        for country in COUNTRIES:
            shipping[rng.choice(WAREHOUSE_CODES[:3])].add(country)
        for countries in shipping.values():
            countries.update(rng.sample(COUNTRIES, rng.randint(0, 2)))
        shipping["W4"] = {"US"}
        for code, countries in shipping.items():
            await inventory.create_warehouse(uow, code=code, name=code, countries=list(countries))
        for category in ("Tea", "Coffee"):
            await make_category(uow, category)
        for i in range(30):
            _, variant_ids = await make_product(
                uow,
                title=f"{rng.choice(['Green', 'Black', 'Smoky'])} blend {i}",
                category_slug=rng.choice(["tea", "coffee"]),
                variants=[{"sku": f"B{i}-{j}"} for j in range(rng.randint(1, 3))],
            )
            for variant in variant_ids:
                for code in rng.sample(WAREHOUSE_CODES, rng.randint(0, 2)):
                    await inventory.receive(uow, variant, code, rng.randint(1, 3))
                    rows.append((variant, code))
        # Carts hold every unit of some rows: on the shelf, but not available.
        for n, (variant, code) in enumerate(rng.sample(rows, len(rows) // 4)):
            level = next(
                s
                for s in await inventory.stock_for_variant(uow, variant)
                if s.warehouse_code == code
            )
            if level.available:
                await inventory.reserve(
                    uow, f"cart-{n}", [(variant, level.available)], warehouse=code
                )
    return rows


async def _check_against_brute_force(app: FastAPI, client: httpx.AsyncClient) -> None:
    for country in COUNTRIES:
        products = await truth(app, country)
        for extra in ([], [("category", "tea")], [("q", "blend green")]):
            params = [("country", country), *extra]
            everything, bodies = await all_pages(client, "/api/search", params)
            matching = {h["id"] for h in everything}
            stocked = {p for p in matching if products[p].in_stock}
            assert {h["id"] for h in everything if h["in_stock"]} == stocked, params
            assert bodies[0]["facets"]["in_stock"] == {
                "in_stock": len(stocked),
                "out_of_stock": len(matching) - len(stocked),
            }, params
            for flag, want in (("true", stocked), ("false", matching - stocked)):
                hits, pages = await all_pages(client, "/api/search", [*params, ("in_stock", flag)])
                assert {h["id"] for h in hits} == want, (params, flag)
                assert pages[0]["total"] == len(want), (params, flag)
        listed, _ = await all_pages(client, "/api/products", [("country", country)])
        assert {p["id"]: p["in_stock"] for p in listed} == {
            p.id: p.in_stock for p in products.values()
        }


@pytest.mark.parametrize("seed", [3, 17])
async def test_counts_per_destination_match_brute_force(
    app: FastAPI, client: httpx.AsyncClient, seed: int
) -> None:
    rng = random.Random(seed)
    rows = await _random_shop(app, rng)
    await reindex(app)
    await _check_against_brute_force(app, client)

    # Stock moves: some rows sold out, some received anew; the index follows after a sync.
    async with runtime_of(app).db.transaction() as uow:
        for variant, code in rng.sample(rows, len(rows) // 3):
            level = next(
                s
                for s in await inventory.stock_for_variant(uow, variant)
                if s.warehouse_code == code
            )
            if level.available:
                await inventory.adjust(uow, variant, code, -level.available, "stock count")
        for variant, _ in rng.sample(rows, 5):
            await inventory.receive(uow, variant, rng.choice(WAREHOUSE_CODES), 1)
    await sync_search(app)
    await _check_against_brute_force(app, client)


# --------------------------------------------------------------------------------------------
# The shop's pages follow the "Deliver to" choice


def _cards(html: str) -> dict[str, str]:
    """Each product card's lamp and what it says of its stock: in stock, out of stock, or not
    available for delivery to the chosen country (units elsewhere)."""
    found = {}
    for card in html.split('data-testid="product-card"')[1:]:
        card = card.split("</article>", 1)[0]
        title = re.search(r'class="card-title">([^<]+)<', card)
        assert title is not None
        lamp = title.group(1).split()[0].lower()
        if "Not available for delivery to" in card:
            assert "Out of stock" not in card
            found[lamp] = "elsewhere " + card.split("Not available for delivery to ", 1)[1][:6]
        else:
            found[lamp] = "out" if "Out of stock" in card else "in"
    return found


async def test_the_listing_pages_and_home_rows_answer_for_the_deliver_to_choice(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await _shop(app)
    for country, stocked in (("FR", "lyon"), ("DE", "berlin")):
        client.cookies.set(DELIVER_TO_COOKIE, country)
        elsewhere = "elsewhere " + {"FR": "France", "DE": "German"}[country]
        expected = {
            lamp: "in" if lamp == stocked else "out" if lamp == "nowhere" else elsewhere
            for lamp in ("lyon", "berlin", "nowhere")
        }
        for path in ("/search?q=lamp", "/c/lighting"):
            r = await client.get(path, headers=HTML)
            assert r.status_code == 200, r.text
            assert _cards(r.text) == expected, (country, path)
        r = await client.get("/search?q=lamp&in_stock=true", headers=HTML)
        assert _cards(r.text) == {stocked: "in"}
        r = await client.get("/", headers=HTML)
        top_rated = r.text.split('aria-label="Top rated"', 1)[1].split("</ul>", 1)[0]
        assert _cards(top_rated) == {stocked: "in"}, country
    client.cookies.clear()
