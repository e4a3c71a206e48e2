"""Words: relevance, typo tolerance, "did you mean", synonyms, autocomplete and snippets."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.search.models import Synonym
from tests.factories import make_product
from tests.search.conftest import assert_problem, reindex, runtime_of, sync


async def _product(app: FastAPI, title: str, **kwargs: Any) -> str:
    async with runtime_of(app).db.transaction() as session:
        product_id, _ = await make_product(session, title=title, **kwargs)
    return product_id


@pytest.fixture
async def kitchen(app: FastAPI) -> dict[str, str]:
    """A dozen kettles, one product whose title misspells "kettle", sneakers and trainers."""
    ids = {}
    for i, brand in enumerate(["Acme", "Nordhaven", "Brightwell"] * 4):
        ids[f"kettle{i}"] = await _product(
            app, f"{brand} Rapid Kettle {i}", brand=brand, category_slug="kettles"
        )
    ids["kettel"] = await _product(app, "Bargain Kettel", category_slug="kettles")
    ids["sneakers"] = await _product(
        app, "Cloud Runner Sneakers", brand="Kestrel", category_slug="sneakers"
    )
    ids["trainers"] = await _product(
        app, "Court Classic Trainers", brand="Larkspur", category_slug="trainers"
    )
    ids["headphones"] = await _product(
        app, "Wireless Headphones Quiet", brand="Marlow & Finch", category_slug="headphones"
    )
    await reindex(app)
    return ids


async def _search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/search", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    return [h["id"] for h in body["hits"]]


async def test_title_outranks_description_and_brand_words_count(
    client: httpx.AsyncClient, kitchen: dict[str, str]
) -> None:
    body = await _search(client, q="nordhaven kettle")
    assert body["total"] == 4 and body["matched"] == "all"
    assert {h["brand"]["slug"] for h in body["hits"]} == {"nordhaven"}
    body = await _search(client, q="Wireless Headphones Quiet")
    assert _ids(body)[0] == kitchen["headphones"]


async def test_a_misspelt_word_is_corrected_and_the_answer_says_so(
    client: httpx.AsyncClient, kitchen: dict[str, str]
) -> None:
    body = await _search(client, q="wirless headphnes")
    assert _ids(body) == [kitchen["headphones"]]
    assert body["showing_results_for"] == "wireless headphones"
    body = await _search(client, q="acme ketle")  # a deletion
    assert body["showing_results_for"] == "acme kettle"
    assert body["total"] == 4
    body = await _search(client, q="sneakres")  # a transposition
    assert _ids(body) == [kitchen["sneakers"]]
    body = await _search(client, q="kettle")
    assert body["showing_results_for"] is None and body["did_you_mean"] is None


async def test_a_rare_word_gets_a_did_you_mean_and_fuzzy_neighbours(
    client: httpx.AsyncClient, kitchen: dict[str, str]
) -> None:
    body = await _search(client, q="kettel")
    assert body["did_you_mean"] == "kettle"
    assert body["showing_results_for"] is None
    ids = _ids(body)
    assert ids[0] == kitchen["kettel"]  # the exact match first, the fuzzy ones after it
    assert kitchen["kettle0"] in ids


async def test_words_that_match_nothing_together_fall_back_to_any(
    client: httpx.AsyncClient, kitchen: dict[str, str]
) -> None:
    body = await _search(client, q="sneakers kettle")
    assert body["matched"] == "any"
    assert kitchen["sneakers"] in _ids(body) and kitchen["kettle0"] in _ids(body)
    body = await _search(client, q="zzzqqq")
    assert body["total"] == 0 and body["hits"] == [] and body["showing_results_for"] is None


async def test_synonyms_are_staff_edited_and_apply_without_a_reindex(
    app: FastAPI,
    client: httpx.AsyncClient,
    kitchen: dict[str, str],
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    assert _ids(await _search(client, q="trainers")) == [kitchen["trainers"]]
    path = "/api/admin/search/synonyms"
    r = await client.post(path, json={"terms": ["Sneakers", "trainers"]}, headers=staff_headers)
    assert r.status_code == 201, r.text
    group = r.json()
    assert group["terms"] == ["sneakers", "trainers"]
    body = await _search(client, q="trainers")
    assert set(_ids(body)) == {kitchen["trainers"], kitchen["sneakers"]}
    assert _ids(body)[0] == kitchen["trainers"]  # the word itself outranks its synonym
    assert set(_ids(await _search(client, q="court sneakers"))) == {kitchen["trainers"]}
    r = await client.get(path, headers=staff_headers)
    assert [g["id"] for g in r.json()["items"]] == [group["id"]]

    async def groups() -> int:
        async with runtime_of(app).db.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(Synonym)) or 0)

    assert_problem(
        await client.post(path, json={"terms": ["tv", "TV "]}, headers=staff_headers),
        422,
        "validation_error",
    )
    assert_problem(
        await client.post(path, json={"terms": ["tv"]}, headers=staff_headers),
        422,
        "validation_error",
    )
    assert_problem(
        await client.post(path, json={"terms": ["tv", "!!"]}, headers=staff_headers),
        422,
        "validation_error",
    )
    assert_problem(
        await client.post(path, json={"terms": ["trainers", "sneakers"]}, headers=staff_headers),
        409,
        "synonyms_exist",
    )
    assert_problem(await client.post(path, json={"terms": ["a", "b"]}), 401, "unauthorized")
    assert_problem(
        await client.post(path, json={"terms": ["a", "b"]}, headers=customer_headers),
        403,
        "forbidden",
    )
    assert await groups() == 1

    r = await client.post(
        path, json={"terms": ["television", "tv", "flat screen"]}, headers=staff_headers
    )
    assert r.status_code == 201
    r = await client.delete(f"{path}/{group['id']}", headers=staff_headers)
    assert r.status_code == 204
    assert _ids(await _search(client, q="trainers")) == [kitchen["trainers"]]
    assert_problem(
        await client.delete(f"{path}/{group['id']}", headers=staff_headers), 404, "not_found"
    )
    assert await groups() == 1


async def test_autocomplete_offers_titles_brands_and_categories(
    client: httpx.AsyncClient, kitchen: dict[str, str]
) -> None:
    async def suggest(q: str) -> dict[str, Any]:
        r = await client.get("/api/search/suggest", params={"q": q})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    body = await suggest("nordh")
    assert {p["title"] for p in body["products"]} == {
        f"Nordhaven Rapid Kettle {i}" for i in (1, 4, 7, 10)
    }
    assert body["brands"] == [{"value": "nordhaven", "label": "Nordhaven", "count": 4}]
    body = await suggest("ket")
    assert body["categories"][0]["value"] == "kettles"
    assert body["categories"][0]["count"] == 13
    body = await suggest("fin")  # a later word of a brand name
    assert body["brands"][0]["label"] == "Marlow & Finch"
    body = await suggest("wireless hea")
    assert [p["id"] for p in body["products"]] == [kitchen["headphones"]]
    body = await suggest("rapid 1")
    assert {p["title"] for p in body["products"]} == {
        "Nordhaven Rapid Kettle 1",
        "Nordhaven Rapid Kettle 10",
        "Brightwell Rapid Kettle 11",
    }
    assert await suggest("") == {"products": [], "brands": [], "categories": []}
    assert await suggest('"*:(') == {"products": [], "brands": [], "categories": []}
    assert_problem(
        await client.get("/api/search/suggest", params={"q": "x" * 1000}), 422, "query_too_long"
    )


async def test_snippets_say_where_the_words_matched(
    app: FastAPI, client: httpx.AsyncClient, kitchen: dict[str, str]
) -> None:
    async with runtime_of(app).db.transaction() as session:
        product_id, _ = await make_product(session, title="Glass teapot")
    r = await client.patch(
        f"/api/admin/products/{product_id}",
        json={"description": "Thé <b>vert</b> & a teapot for two, a strainer too."},
        headers=await _staff(app),
    )
    assert r.status_code == 200, r.text
    await sync(app)
    [hit] = (await _search(client, q="teapots"))["hits"]
    assert hit["snippet"] == "Thé <b>vert</b> & a teapot for two, a strainer too."
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["teapot"]
    body = await _search(client, q="vert teapot")
    [hit] = [h for h in body["hits"] if h["id"] == product_id]
    assert [hit["snippet"][s:e] for s, e in hit["highlights"]] == ["vert", "teapot"]


async def _staff(app: FastAPI) -> dict[str, str]:
    from tests.conftest import user_headers

    return await user_headers(app, "staff", "editor@example.com")


async def test_a_word_typed_twice_is_matched_once_and_ranks_the_same(
    client: httpx.AsyncClient, kitchen: dict[str, str]
) -> None:
    once = await _search(client, q="kettle", limit=100)
    twice = await _search(client, q="kettle kettles", limit=100)
    assert twice["total"] == once["total"] == 13
    assert _ids(twice) == _ids(once)
    assert twice["facets"] == once["facets"]
    assert twice["showing_results_for"] is None and twice["matched"] == "all"
