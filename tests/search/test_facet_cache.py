"""Facets of requests without words are kept per index generation: a repeated browse is
answered from the cache with the very counts a fresh count gives, and a commit or a rebuild
starts a new generation, so no count from before a change is served after it."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato.search import query as q
from mercato.search import service
from mercato.search.demo import generated_sources
from mercato.search.engine import (
    IndexStore,
    ProductSource,
    ResultCache,
    SearchEngine,
    VersionBuilder,
    to_document,
)
from tests.factories import make_product
from tests.search.conftest import reindex, runtime_of, sync

SECRET = "cursor-key"


@pytest.fixture
def engine(tmp_path: Path) -> tuple[SearchEngine, list[ProductSource]]:
    store = IndexStore(tmp_path / "search")
    builder = VersionBuilder(store, memory=50_000_000, threads=1)
    sources = list(generated_sources(300, seed=5, currency="EUR"))
    for source in sources:
        builder.add(source)
    builder.finish(datetime.now(UTC))
    return SearchEngine(store), sources


def _browse(department: str, **filters: Any) -> q.SearchRequest:
    return q.SearchRequest(
        filters=q.Filters(category=department, **filters), snippets=False, currency="EUR"
    )


def _fresh(engine: SearchEngine, request: q.SearchRequest) -> q.SearchResult:
    """The answer computed without the cache (another process's reader, as it were)."""
    reader = SearchEngine(engine.store).reader()
    assert reader is not None
    return q.search(reader, request, secret_key=SECRET)


def test_a_repeated_browse_is_answered_from_the_cache_with_exact_counts(
    engine: tuple[SearchEngine, list[ProductSource]],
) -> None:
    search_engine, sources = engine
    reader = search_engine.reader()
    assert reader is not None
    department = sources[0].categories[0][0]
    request = _browse(department, in_stock=True)
    first = q.search(reader, request, secret_key=SECRET)
    results = reader.snapshot().results
    assert q.facet_key(request) in results
    hits = results.hits
    again = q.search(reader, replace(request, sort="price_asc"), secret_key=SECRET)
    assert results.hits == hits + 1  # another sort, the same facets
    expected = [s for s in sources if s.categories[0][0] == department and s.in_stock]
    assert first.total == again.total == len(expected)
    assert first.facets == again.facets
    assert again.facets is not None
    assert again.facets["in_stock"] == {"in_stock": len(expected), "out_of_stock": 0}
    assert again.facets == _fresh(search_engine, replace(request, sort="price_asc")).facets

    # Other filters or other facets are other entries; words are never cached.
    size = len(results)
    brands_only = replace(request, facets=frozenset({"brand"}))
    sold_out = _browse(department, in_stock=False)
    for other in (brands_only, sold_out, replace(request, q=sources[0].title)):
        q.search(reader, other, secret_key=SECRET)
    assert q.facet_key(brands_only) in results and q.facet_key(sold_out) in results
    assert len(results) == size + 2

    # A page further on keeps the first page's total and facets.
    page_one = q.search(reader, replace(request, limit=5), secret_key=SECRET)
    assert page_one.next_cursor is not None
    page_two = q.search(
        reader, replace(request, limit=5, cursor=page_one.next_cursor), secret_key=SECRET
    )
    assert (page_two.total, page_two.facets) == (page_one.total, page_one.facets)
    assert not set(page_two.ids) & set(page_one.ids)


def test_a_commit_starts_a_new_generation(
    engine: tuple[SearchEngine, list[ProductSource]],
) -> None:
    search_engine, sources = engine
    reader = search_engine.reader()
    assert reader is not None
    department = sources[0].categories[0][0]
    request = _browse(department)
    before = q.search(reader, request, secret_key=SECRET)
    snapshot = reader.snapshot()

    # Reloading without a commit keeps the generation and its cache.
    assert reader.reload() is False
    assert reader.snapshot() is snapshot
    q.search(reader, request, secret_key=SECRET)
    assert snapshot.results.hits == 1

    # One product of the department sells out: the next answer counts it.
    target = next(s for s in sources if s.categories[0][0] == department and s.in_stock)
    writer = search_engine.writer()
    assert writer is not None
    writer.upsert(target.id, to_document(replace(target, in_stock=False)))
    writer.commit(datetime.now(UTC))
    search_engine.committed(writer)
    assert reader.snapshot() is not snapshot
    after = q.search(reader, request, secret_key=SECRET)
    assert before.facets is not None and after.facets is not None
    assert after.total == before.total
    assert after.facets["in_stock"] == {
        "in_stock": before.facets["in_stock"]["in_stock"] - 1,
        "out_of_stock": before.facets["in_stock"]["out_of_stock"] + 1,
    }
    assert after.facets == _fresh(search_engine, request).facets


def test_the_cache_keeps_the_most_recently_used() -> None:
    cache = ResultCache(size=3)
    for key in "abc":
        cache.put(key, key.upper())
    assert cache.get("a") == "A"  # "b" is now the least recently used
    cache.put("d", "D")
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(k) for k in "acd"] == ["A", "C", "D"]


async def _facets(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    r = await client.get("/api/search", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_browse_facets_follow_updates_and_rebuilds(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    async with runtime_of(app).db.transaction() as session:
        for i in range(3):
            await make_product(session, title=f"Cached kettle {i}", category_slug="kettles")
    await reindex(app)
    first = await _facets(client, category="kettles")
    assert first["total"] == 3
    await _facets(client, category="kettles", sort="newest")
    reader = service.engine_for(runtime_of(app)).reader()
    assert reader is not None and reader.snapshot().results.hits >= 1

    # A new product in the category, fed by the worker: counted at once.
    async with runtime_of(app).db.transaction() as session:
        await make_product(session, title="Cached kettle 3", category_slug="kettles")
    await sync(app)
    second = await _facets(client, category="kettles")
    assert second["total"] == 4
    assert {c["path"]: c["count"] for c in second["facets"]["category"]} == {"kettles": 4}

    # A price change moves a product to another price bucket.
    product_id = second["hits"][0]["id"]
    r = await client.get(f"/api/products/{product_id}")
    variant_id = r.json()["variants"][0]["id"]
    r = await client.patch(
        f"/api/admin/variants/{variant_id}", json={"price": "120.00"}, headers=staff_headers
    )
    assert r.status_code == 200, r.text
    await sync(app)
    third = await _facets(client, category="kettles")
    assert {p["from"]: p["count"] for p in third["facets"]["price"]} == {"10.00": 3, "100.00": 1}

    # A rebuild (a new version) answers with its own counts.
    async with runtime_of(app).db.transaction() as session:
        await make_product(session, title="Cached kettle 4", category_slug="kettles")
    await reindex(app)
    fourth = await _facets(client, category="kettles")
    assert fourth["total"] == 5


def test_attribute_counts_are_exact_with_more_attributes_than_slots(tmp_path: Path) -> None:
    """Attributes are counted per slot column and an overflow column: products with one to
    six attributes (more than there are slots) still give exact counts."""
    store = IndexStore(tmp_path / "search")
    builder = VersionBuilder(store, memory=50_000_000, threads=1)
    template = next(iter(generated_sources(1, seed=3, currency="EUR")))
    names = ["colour", "material", "size", "style", "finish", "origin"]
    sources = []
    for n in range(60):
        attributes = {name: f"{name}-{(n + i) % 3}" for i, name in enumerate(names[: 1 + n % 6])}
        sources.append(replace(template, id=f"a{n:02d}", attributes=attributes))
    for source in sources:
        builder.add(source)
    builder.finish(datetime.now(UTC))
    reader = SearchEngine(store).reader()
    assert reader is not None
    assert q.has_more_attributes(reader.snapshot())

    result = q.search(reader, q.SearchRequest(currency="EUR"), secret_key=SECRET)
    assert result.facets is not None and result.total == 60
    expected: dict[str, dict[str, int]] = {}
    for source in sources:
        for name, value in source.attributes.items():
            expected.setdefault(name, {}).setdefault(value, 0)
            expected[name][value] += 1
    got = {
        name: {v["value"]: v["count"] for v in values}
        for name, values in result.facets["attributes"].items()
    }
    assert got == expected


def test_the_overflow_column_is_skipped_when_no_product_needs_it(
    engine: tuple[SearchEngine, list[ProductSource]],
) -> None:
    search_engine, sources = engine
    assert max(len(s.attributes) for s in sources) <= 3
    reader = search_engine.reader()
    assert reader is not None
    assert not q.has_more_attributes(reader.snapshot())
    result = q.search(reader, q.SearchRequest(currency="EUR"), secret_key=SECRET)
    assert result.facets is not None and result.facets["attributes"]
    for name, values in result.facets["attributes"].items():  # the top names only
        for value in values:
            expected = sum(1 for s in sources if s.attributes.get(name) == value["value"])
            assert value["count"] == expected, (name, value)
