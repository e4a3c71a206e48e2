"""Bad input gets a 4xx problem or an empty page: never a 500, never an engine error."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from itsdangerous import URLSafeSerializer

from mercato.search.query import fingerprint, words_of
from mercato.settings import Settings
from tests.factories import make_product
from tests.search.conftest import assert_problem, reindex, runtime_of

SYNTAX = ['"', ":", "(", ")", "*", "~", "title:", "a AND (b", "\\", "^2", "[1 TO 5]", "+-!{}"]


async def _seed(app: FastAPI) -> None:
    async with runtime_of(app).db.transaction() as session:
        for i in range(5):
            await make_product(session, title=f"Acme kettle {i}", brand="Acme")
    await reindex(app)


async def test_query_syntax_is_just_text(app: FastAPI, client: httpx.AsyncClient) -> None:
    await _seed(app)
    for text in SYNTAX + [f"kettle{c}" for c in SYNTAX] + ["\x1bkettle\x1f", "ケトル", "😀"]:
        r = await client.get("/api/search", params={"q": text})
        assert r.status_code == 200, (text, r.text)
        r = await client.get("/api/search/suggest", params={"q": text})
        assert r.status_code == 200, (text, r.text)
    # No text anywhere may hold a NUL (the app refuses it before any module sees it).
    for path in ("/api/search", "/api/search/suggest"):
        r = await client.get(path, params={"q": "\x00kettle"})
        assert (r.status_code, r.json()["code"]) == (422, "nul_character")
    body = (await client.get("/api/search", params={"q": 'title:"kettle*" ~acme'})).json()
    assert body["total"] == 5


async def test_bad_parameters_are_problems(app: FastAPI, client: httpx.AsyncClient) -> None:
    await _seed(app)
    cases = [
        ({"q": "x" * 1000}, 422, "query_too_long"),
        ({"q": "kettle " * 40}, 422, "query_too_long"),
        ({"min_price": "-1"}, 422, "invalid_price_range"),
        ({"max_price": "-0.01"}, 422, "invalid_price_range"),
        ({"min_price": "ten"}, 422, "invalid_price_range"),
        ({"min_price": "1.001"}, 422, "invalid_price_range"),
        ({"min_price": "20", "max_price": "10"}, 422, "invalid_price_range"),
        ({"facets": "brand,colourz"}, 422, "unknown_facet"),
        ({"cursor": "garbage"}, 400, "invalid_cursor"),
        ({"limit": "0"}, 422, "validation_error"),
        ({"limit": "101"}, 422, "validation_error"),
        ({"sort": "cheapest"}, 422, "validation_error"),
        ({"rating_gte": "6"}, 422, "validation_error"),
        ({"rating_gte": "-1"}, 422, "validation_error"),
        ({"in_stock": "maybe"}, 422, "validation_error"),
        ({"currency": "euro"}, 422, "validation_error"),
        ({"attr.Bad-Name": "x"}, 422, "validation_error"),
        ({"attr.colour": "x" * 201}, 422, "validation_error"),
        ({"category": "c" * 81}, 422, "validation_error"),
        ({"brand": "b" * 81}, 422, "validation_error"),
    ]
    for params, status, code in cases:
        assert_problem(await client.get("/api/search", params=params), status, code)


async def test_unknown_values_and_pages_beyond_the_end_are_empty(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    await _seed(app)
    for params in (
        {"category": "no-such-category"},
        {"brand": "no-such-brand"},
        {"attr.no_such": "thing"},
        {"min_price": "1000000"},
        {"q": "kettle", "currency": "JPY"},
    ):
        r = await client.get("/api/search", params=params)
        assert r.status_code == 200 and r.json()["total"] == 0 and r.json()["hits"] == []

    signer = URLSafeSerializer(settings.secret_key, salt="search-cursor")
    from mercato.search.query import Filters, Reach

    # A cursor is issued for one destination: the shop's default country here.
    stamp = fingerprint(words_of("kettle"), Filters(reach=Reach(settings.default_country, ())))
    far = signer.dumps({"s": "relevance", "f": stamp, "o": 5000})
    r = await client.get("/api/search", params={"q": "kettle", "cursor": far})
    assert r.status_code == 200 and r.json()["hits"] == [] and r.json()["next_cursor"] is None
    assert r.json()["total"] == 5
    end = signer.dumps({"s": "price_asc", "f": stamp, "k": 2**62, "i": ["prd_x"]})
    r = await client.get("/api/search", params={"q": "kettle", "sort": "price_asc", "cursor": end})
    assert r.status_code == 200 and r.json()["hits"] == []

    first = (await client.get("/api/search", params={"q": "kettle", "limit": 2})).json()
    cursor = first["next_cursor"]
    tampered = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    foreign = URLSafeSerializer("another-secret", salt="search-cursor").dumps(
        {"s": "relevance", "f": stamp, "o": 2}
    )
    for params in (
        {"q": "kettle", "cursor": tampered},
        {"q": "kettle", "cursor": foreign},
        {"q": "acme", "cursor": cursor},  # issued for another query
        {"q": "kettle", "sort": "newest", "cursor": cursor},  # ... or another sort
        {"q": "kettle", "cursor": signer.dumps({"s": "relevance", "f": stamp, "o": -1})},
        {"q": "kettle", "cursor": signer.dumps({"s": "relevance", "f": stamp, "o": "2"})},
        {"q": "kettle", "cursor": signer.dumps(["relevance"])},
        {"q": "kettle", "sort": "newest", "cursor": signer.dumps({"s": "newest", "f": stamp})},
    ):
        assert_problem(await client.get("/api/search", params=params), 400, "invalid_cursor")
    r = await client.get("/api/search", params={"q": "kettle", "limit": 2, "cursor": cursor})
    assert r.status_code == 200 and len(r.json()["hits"]) == 2


async def test_without_an_index_search_says_so_and_the_listing_still_works(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    async with runtime_of(app).db.transaction() as session:
        await make_product(session, title="Acme kettle")
    assert_problem(
        await client.get("/api/search", params={"q": "kettle"}), 503, "search_unavailable"
    )
    assert_problem(
        await client.get("/api/search/suggest", params={"q": "ke"}), 503, "search_unavailable"
    )
    r = await client.get("/api/products")
    assert r.status_code == 200 and len(r.json()["items"]) == 1
