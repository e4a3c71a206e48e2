"""Stock and rating filters as indexed terms give exactly the products the values say, at the
edges too: a rating of exactly 4.0 is "4 stars and up", 3.99 is not; sold out means no variant
in stock, one variant in stock is enough to be in stock."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from tantivy import FieldType, Query

from mercato.inventory import service as inventory
from mercato.search import query as q
from mercato.search.engine import (
    FLAGS,
    SCHEMA,
    SCHEMA_VERSION,
    IndexStore,
    ProductSource,
    Reader,
    SearchEngine,
    VersionBuilder,
    flags,
)
from tests.factories import make_product
from tests.search.conftest import reindex, runtime_of, sync

RATINGS = (0.0, 0.5, 1.0, 1.99, 2.0, 3.0, 3.49, 3.5, 3.99, 4.0, 4.01, 4.5, 4.99, 5.0)
THRESHOLDS = (0, 0.5, 1, 1.0, 2, 3, 3.5, 3.99, 4, 4.0, 4.2, 4.99, 5)


def _sources() -> list[ProductSource]:
    """Every edge rating, in and out of stock, in two categories, some with the word "lamp"."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    found = []
    for n, (rating, in_stock, lamp) in enumerate(
        itertools.product(RATINGS, (True, False), (True, False))
    ):
        category = ("home", "Home") if n % 3 else ("garden", "Garden")
        found.append(
            ProductSource(
                id=f"p{n:03d}",
                title=f"{'Desk lamp' if lamp else 'Garden chair'} {n}",
                description="A thing for the house.",
                brand_slug="acme",
                brand_name="Acme",
                categories=(category,),
                attributes={},
                options=(),
                skus=(f"SKU-{n}",),
                currency="EUR",
                min_price=1000 + 100 * n,
                max_price=1000 + 100 * n,
                in_stock=in_stock,
                image=None,
                created_at=start + timedelta(hours=n),
                rating=rating,
                rating_count=1 if rating else 0,
                sales=n,
            )
        )
    return found


@pytest.fixture(scope="module")
def edge_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Reader, list[ProductSource]]:
    store = IndexStore(Path(tmp_path_factory.mktemp("edges")) / "search")
    builder = VersionBuilder(store, memory=50_000_000, threads=1)
    sources = _sources()
    for source in sources:
        builder.add(source)
    builder.finish(datetime.now(UTC))
    reader = SearchEngine(store).reader()
    assert reader is not None
    return reader, sources


def _ids(reader: Reader, request: q.SearchRequest) -> tuple[set[str], int]:
    result = q.search(reader, replace(request, limit=q.MAX_LIMIT), secret_key="k")
    assert result.next_cursor is None  # the whole answer fits on one page
    return set(result.ids), result.total


def test_flags_follow_the_values() -> None:
    [source] = [replace(s, sales=0) for s in _sources() if s.rating == 4.0 and s.in_stock][:1]
    assert flags(source) == ["in_stock", "rating>=1", "rating>=2", "rating>=3", "rating>=4"]
    sold_out = replace(source, in_stock=False, rating=3.99)
    assert flags(sold_out) == ["out_of_stock", "rating>=1", "rating>=2", "rating>=3"]
    assert flags(replace(source, rating=0.0)) == ["in_stock"]
    assert flags(replace(source, rating=5.0))[-1] == "rating>=5"
    # Sales tiers follow the sales rank (the decayed score, else the units sold).
    assert flags(replace(source, sales=12))[-3:] == ["sales>=1", "sales>=3", "sales>=10"]
    assert flags(replace(source, sales=12, sales_score=2.5))[-1] == "sales>=1"


def test_rating_and_stock_filters_match_the_values(
    edge_index: tuple[Reader, list[ProductSource]],
) -> None:
    reader, sources = edge_index
    stocks: tuple[bool | None, ...] = (None, True, False)
    for gte, in_stock, words, category in itertools.product(
        (None, *THRESHOLDS), stocks, ("", "lamp"), (None, "home")
    ):
        expected = {
            s.id
            for s in sources
            if (gte is None or s.rating >= gte)
            and (in_stock is None or s.in_stock is in_stock)
            and (not words or words in s.title.lower())
            and (category is None or s.categories[0][0] == category)
        }
        for sort in ("relevance", "rating"):
            request = q.SearchRequest(
                q=words,
                filters=q.Filters(category=category, rating_gte=gte, in_stock=in_stock),
                sort=sort,
                currency="EUR",
            )
            ids, total = _ids(reader, request)
            assert ids == expected, (gte, in_stock, words, category, sort)
            assert total == len(expected)


def test_whole_star_terms_select_what_the_rating_column_selects(
    edge_index: tuple[Reader, list[ProductSource]],
) -> None:
    """The term is an index of the column: both ways of asking give the same documents."""
    reader, _ = edge_index
    searcher = reader.searcher()
    for stars in (1, 2, 3, 4, 5):
        by_term = Query.term_query(SCHEMA, FLAGS, f"rating>={stars}")
        by_column = Query.range_query(SCHEMA, "rating", FieldType.Float, lower_bound=float(stars))
        terms = {(a.segment_ord, a.doc) for _, a in searcher.search(by_term, 1000).hits}
        column = {(a.segment_ord, a.doc) for _, a in searcher.search(by_column, 1000).hits}
        assert terms == column and terms, stars


def test_stock_facet_counts_agree_with_the_stock_filters(
    edge_index: tuple[Reader, list[ProductSource]],
) -> None:
    reader, sources = edge_index
    result = q.search(reader, q.SearchRequest(q="lamp", currency="EUR"), secret_key="k")
    assert result.facets is not None
    lamps = [s for s in sources if "lamp" in s.title.lower()]
    assert result.facets["in_stock"] == {
        "in_stock": sum(1 for s in lamps if s.in_stock),
        "out_of_stock": sum(1 for s in lamps if not s.in_stock),
    }
    for in_stock in (True, False):
        _, total = _ids(
            reader, q.SearchRequest(q="lamp", filters=q.Filters(in_stock=in_stock), currency="EUR")
        )
        assert total == result.facets["in_stock"]["in_stock" if in_stock else "out_of_stock"]


async def test_one_variant_in_stock_is_enough(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    async with runtime_of(app).db.transaction() as session:
        await inventory.create_warehouse(session, code="BER", name="Berlin", countries=["DE"])
        every, _ = await make_product(
            session, title="Stocked lantern", variants=[{"sku": "ALL-1"}, {"sku": "ALL-2"}]
        )
        some, _ = await make_product(
            session, title="Half lantern", variants=[{"sku": "SOME-1"}, {"sku": "SOME-2"}]
        )
        none, _ = await make_product(
            session, title="Empty lantern", variants=[{"sku": "NONE-1"}, {"sku": "NONE-2"}]
        )
    async with runtime_of(app).db.transaction() as conn:
        for sku in ("ALL-1", "ALL-2", "SOME-2"):
            await inventory.receive(conn, sku, "BER", 2)
    await reindex(app)

    async def ids(**params: str) -> set[str]:
        r = await client.get("/api/search", params={"q": "lantern", **params})
        assert r.status_code == 200, r.text
        return {h["id"] for h in r.json()["hits"]}

    assert await ids(in_stock="true") == {every, some}
    assert await ids(in_stock="false") == {none}
    assert await ids() == {every, some, none}

    # The last unit of the half-stocked product's one variant goes: it is sold out.
    async with runtime_of(app).db.transaction() as conn:
        await inventory.adjust(conn, "SOME-2", "BER", -2, reason="count")
    await sync(app)
    assert await ids(in_stock="true") == {every}
    assert await ids(in_stock="false") == {some, none}


def test_an_index_of_the_previous_schema_is_not_used(tmp_path: Path) -> None:
    """Version 1 had no flags: its "in stock" and rating filters would match nothing, so such
    an index is ignored (the catalog answers) until a rebuild."""
    store = IndexStore(tmp_path / "search")
    builder = VersionBuilder(store, memory=50_000_000, threads=1)
    for source in _sources()[:5]:
        builder.add(source)
    meta = builder.finish(datetime.now(UTC))
    assert SearchEngine(store).reader() is not None
    store.write_meta(replace(meta, schema=SCHEMA_VERSION - 1))
    engine = SearchEngine(store)
    assert engine.reader() is None
    assert engine.writer() is None
