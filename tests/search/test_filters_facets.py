"""Filters, facets, sorts and pages, each checked against a brute-force answer from the data."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx

from mercato.search.query import stem
from tests.search.conftest import Truth, all_pages

Params = list[tuple[str, str]]


def _expected_facets(matching: list[Truth]) -> dict[str, Any]:
    brands = Counter(t.brand for t in matching if t.brand)
    categories: Counter[str] = Counter()
    for t in matching:
        parts = t.category_path.split("/")
        for depth in range(len(parts)):
            categories["/".join(parts[: depth + 1])] += 1
    edges = [0, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, None]
    prices: dict[str, int] = {}
    for low, high in itertools.pairwise(edges):
        count = sum(
            1 for t in matching if t.min_price >= low and (high is None or t.min_price < high)
        )
        if count:
            prices[f"{low // 100}.00"] = count
    return {
        "brand": dict(brands),
        "category": dict(categories),
        "price": prices,
        "rating": {n: sum(1 for t in matching if t.rating >= n) for n in (4, 3, 2, 1)},
        "in_stock": {
            "in_stock": sum(1 for t in matching if t.in_stock),
            "out_of_stock": sum(1 for t in matching if not t.in_stock),
        },
        "attributes": Counter(p for t in matching for p in t.attributes.items()),
    }


def _check_facets(facets: dict[str, Any], matching: list[Truth]) -> None:
    want = _expected_facets(matching)
    assert {b["value"]: b["count"] for b in facets["brand"]} == want["brand"]
    assert {c["path"]: c["count"] for c in facets["category"]} == want["category"]
    assert {p["from"]: p["count"] for p in facets["price"]} == want["price"]
    assert {r["gte"]: r["count"] for r in facets["rating"]} == want["rating"]
    assert facets["in_stock"] == want["in_stock"]
    for name, values in facets["attributes"].items():
        for value in values:
            assert value["count"] == want["attributes"][(name, value["value"])], (name, value)


def _cases(shop: dict[str, Truth]) -> list[tuple[Params, Callable[[Truth], bool]]]:
    some = sorted(shop.values(), key=lambda t: t.id)
    brand_a, brand_b = sorted({t.brand for t in some if t.brand})[:2]
    product = some[0]
    attr_name, attr_value = sorted(product.attributes.items())[0]
    option_name, option_value = sorted(product.options)[0]
    department = product.category_path.split("/")[0]
    leaf = product.category_path.split("/")[-1]
    return [
        ([], lambda t: True),
        ([("category", department)], lambda t: department in t.category_slugs),
        ([("category", leaf)], lambda t: leaf in t.category_slugs),
        ([("brand", brand_a)], lambda t: t.brand == brand_a),
        ([("brand", brand_a), ("brand", brand_b)], lambda t: t.brand in {brand_a, brand_b}),
        (
            [("min_price", "20"), ("max_price", "99.99")],
            lambda t: 2000 <= t.min_price <= 9999,
        ),
        ([("rating_gte", "4")], lambda t: t.rating >= 4),
        ([("in_stock", "true")], lambda t: t.in_stock),
        ([("in_stock", "false")], lambda t: not t.in_stock),
        (
            [(f"attr.{attr_name}", attr_value)],
            lambda t: t.attributes.get(attr_name) == attr_value,
        ),
        (
            [(f"attr.{option_name}", option_value)],
            lambda t: (option_name, option_value) in t.pairs,
        ),
        (
            [
                ("category", department),
                ("in_stock", "true"),
                ("rating_gte", "3.5"),
                ("max_price", "250"),
            ],
            lambda t: (
                department in t.category_slugs
                and t.in_stock
                and t.rating >= 3.5
                and t.min_price <= 25000
            ),
        ),
    ]


async def test_filters_and_facet_counts_match_brute_force(
    client: httpx.AsyncClient, shop: dict[str, Truth]
) -> None:
    for params, keep in _cases(shop):
        matching = [t for t in shop.values() if keep(t)]
        hits, bodies = await all_pages(client, "/api/search", params)
        assert sorted(h["id"] for h in hits) == sorted(t.id for t in matching), params
        assert bodies[0]["total"] == len(matching), params
        _check_facets(bodies[0]["facets"], matching)


async def test_facets_follow_the_words_too(
    client: httpx.AsyncClient, shop: dict[str, Truth]
) -> None:
    word = next(t.title.split()[-1] for t in shop.values() if len(t.title.split()[-1]) > 4)
    hits, bodies = await all_pages(client, "/api/search", [("q", word)])
    assert hits and bodies[0]["total"] == len(hits)
    _check_facets(bodies[0]["facets"], [shop[h["id"]] for h in hits])
    r = await client.get("/api/search", params={"q": word, "facets": "brand,price"})
    assert set(r.json()["facets"]) == {"brand", "price"}
    r = await client.get("/api/search", params={"q": word, "facets": "none"})
    assert r.json()["facets"] is None and r.json()["total"] == len(hits)


async def test_hits_carry_what_a_result_list_shows(
    client: httpx.AsyncClient, shop: dict[str, Truth]
) -> None:
    target = sorted(shop.values(), key=lambda t: t.id)[3]
    r = await client.get("/api/search", params={"q": target.title, "limit": 5})
    hit = next(h for h in r.json()["hits"] if h["id"] == target.id)
    assert hit["title"] == target.title
    assert hit["brand"]["slug"] == target.brand
    assert hit["category"]["path"] == target.category_path
    assert hit["min_price"] == f"{target.min_price // 100}.{target.min_price % 100:02d}"
    assert hit["currency"] == "EUR"
    assert hit["in_stock"] is target.in_stock
    assert hit["rating"] == (target.rating if target.rating else None)
    assert hit["image"].startswith("/static/img/")
    marked = [stem(hit["snippet"][start:end].lower()) for start, end in hit["highlights"]]
    assert marked and set(marked) <= {stem(w.lower()) for w in target.title.split()}


def _is_sorted(values: list[Any], descending: bool) -> bool:
    pairs = list(itertools.pairwise(values))
    return all(a >= b for a, b in pairs) if descending else all(a <= b for a, b in pairs)


async def test_sorts_and_pages_never_repeat_or_skip(
    client: httpx.AsyncClient, shop: dict[str, Truth]
) -> None:
    department = sorted(shop.values(), key=lambda t: t.id)[0].category_path.split("/")[0]
    expected = {t.id for t in shop.values() if department in t.category_slugs}
    for sort, key, descending in [
        ("price_asc", lambda t: t.min_price, False),
        ("price_desc", lambda t: t.min_price, True),
        ("newest", lambda t: t.created_at, True),
        ("rating", lambda t: t.rating, True),
        ("relevance", lambda t: t.sales, True),  # no words: best sellers first
        ("best_selling", lambda t: t.sales, True),
    ]:
        hits, _ = await all_pages(
            client, "/api/search", [("category", department), ("sort", sort)], limit=7
        )
        ids = [h["id"] for h in hits]
        assert len(ids) == len(set(ids)), f"{sort}: repeated"
        assert set(ids) == expected, f"{sort}: skipped"
        assert _is_sorted([key(shop[i]) for i in ids], descending), sort

    word = sorted(shop.values(), key=lambda t: t.id)[0].title.split()[-1]
    whole, _ = await all_pages(client, "/api/search", [("q", word)], limit=100)
    paged, _ = await all_pages(client, "/api/search", [("q", word)], limit=3)
    assert [h["id"] for h in paged] == [h["id"] for h in whole]
    assert len({h["id"] for h in paged}) == len(paged)
