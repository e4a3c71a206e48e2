"""The personal re-rank on an index built straight from the demo generator (no database: this
checks the query side, once): whatever a customer's affinities, the matching products, the
total and the facets are a guest's, pages over the re-ranked top neither repeat nor skip a
product, explicit sorts and browsing are untouched, and a favourite brand comes earlier."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercato.search import query as q
from mercato.search.demo import generated_sources
from mercato.search.engine import IndexStore, ProductSource, Reader, SearchEngine, VersionBuilder
from mercato.search.personal import NO_AFFINITY, TOP_N, Affinity, Candidate, personal_order

PRODUCTS = 600
SECRET = "personal"
QUERIES: list[tuple[str, q.Filters]] = [
    ("designed", q.Filters()),
    ("material", q.Filters()),
    ("warranty durable", q.Filters()),
    ("key facts", q.Filters(in_stock=True)),
    ("designed", q.Filters(min_price=1000, max_price=20_000, currency="EUR")),
    ("built", q.Filters(category="home-kitchen")),
    ("the", q.Filters(rating_gte=3.5)),
]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Reader, list[ProductSource]]:
    store = IndexStore(Path(tmp_path_factory.mktemp("personal")) / "search")
    builder = VersionBuilder(store)
    sources = list(generated_sources(PRODUCTS, seed=7, currency="EUR"))
    for source in sources:
        builder.add(source)
    builder.finish(datetime.now(UTC))
    reader = SearchEngine(store).reader()
    assert reader is not None
    return reader, sources


def _search(
    reader: Reader,
    text: str,
    filters: q.Filters,
    affinity: Affinity = NO_AFFINITY,
    *,
    sort: str = "relevance",
    limit: int = 24,
    cursor: str | None = None,
) -> q.SearchResult:
    request = q.SearchRequest(
        q=text, filters=filters, sort=sort, limit=limit, cursor=cursor, currency="EUR"
    )
    return q.search(reader, request, secret_key=SECRET, affinity=affinity)


def _all_ids(
    reader: Reader,
    text: str,
    filters: q.Filters,
    affinity: Affinity = NO_AFFINITY,
    *,
    sort: str = "relevance",
    limit: int = 24,
) -> list[str]:
    ids: list[str] = []
    cursor = None
    for _ in range(1000):
        result = _search(reader, text, filters, affinity, sort=sort, limit=limit, cursor=cursor)
        ids += result.ids
        cursor = result.next_cursor
        if cursor is None:
            return ids
    raise AssertionError("pagination did not end")


def _favourites(sources: Sequence[ProductSource], ids: Sequence[str]) -> tuple[str, str]:
    """A brand and a category with products among ``ids`` but none of them first."""
    by_id = {s.id: s for s in sources}
    brands = Counter(by_id[i].brand_slug for i in ids[1:TOP_N] if by_id[i].brand_slug)
    leaf = Counter(by_id[i].categories[-1][0] for i in ids[1:TOP_N])
    first = by_id[ids[0]]
    brand = next(b for b, _ in brands.most_common() if b != first.brand_slug)
    category = next(c for c, _ in leaf.most_common() if c != first.categories[-1][0])
    assert brand is not None
    return brand, category


def test_the_order_is_a_permutation_by_boosted_score_ties_kept() -> None:
    fan = Affinity(brands={"acme": 1.0}, categories={"kettles": 0.5})
    candidates = [  # the relevance order
        Candidate(10.0, "other", "home/kettles"),  # 10 * 1.075 = 10.75
        Candidate(10.0, "other", "home/lamps"),  # 10
        Candidate(9.0, "acme", "home/toasters"),  # 9 * 1.25 = 11.25
        Candidate(8.0, "acme", "home/kettles"),  # 8 * 1.325 = 10.6
        Candidate(8.0, "other", "home/lamps"),  # 8
        Candidate(1.0, None, ""),
    ]
    assert personal_order(candidates, fan) == [2, 0, 3, 1, 4, 5]
    assert personal_order(candidates, NO_AFFINITY) == [0, 1, 2, 3, 4, 5]


def test_a_category_weighs_along_the_hit_path_and_bad_weights_are_clamped() -> None:
    fan = Affinity(brands={"acme": 7.0, "nan": float("nan")}, categories={"home": 0.4})
    assert fan.boost("acme", "") == pytest.approx(1.25)
    assert fan.boost("nan", "") == 1.0
    assert fan.boost(None, "home/kitchen/kettles") == pytest.approx(1.06)
    assert not NO_AFFINITY and fan


def test_a_favourite_brand_comes_earlier_than_for_a_guest(
    catalog: tuple[Reader, list[ProductSource]],
) -> None:
    reader, sources = catalog
    guest = _search(reader, "designed", q.Filters(), limit=TOP_N)
    brand, _ = _favourites(sources, guest.ids)
    by_id = {s.id: s for s in sources}
    fan = _search(reader, "designed", q.Filters(), Affinity(brands={brand: 1.0}), limit=TOP_N)

    def first_of_brand(ids: Sequence[str]) -> int:
        return next(i for i, p in enumerate(ids) if by_id[p].brand_slug == brand)

    assert fan.personalized and not guest.personalized
    assert first_of_brand(fan.ids) < first_of_brand(guest.ids)
    positions = [i for i, p in enumerate(fan.ids) if by_id[p].brand_slug == brand]
    guest_positions = [i for i, p in enumerate(guest.ids) if by_id[p].brand_slug == brand]
    assert sum(positions) < sum(guest_positions)
    assert sorted(fan.ids) == sorted(guest.ids)  # the top N is re-ordered, never replaced


@pytest.mark.parametrize(("text", "filters"), QUERIES)
@pytest.mark.parametrize("limit", [7, 24, 100])
def test_pages_over_the_reranked_top_neither_repeat_nor_skip(
    catalog: tuple[Reader, list[ProductSource]], text: str, filters: q.Filters, limit: int
) -> None:
    reader, sources = catalog
    guest_ids = _all_ids(reader, text, filters, limit=limit)
    brand, category = _favourites(sources, guest_ids) if len(guest_ids) > 2 else ("x", "y")
    fan = Affinity(brands={brand: 1.0}, categories={category: 0.7})
    fan_ids = _all_ids(reader, text, filters, fan, limit=limit)
    assert len(fan_ids) == len(set(fan_ids)) == len(guest_ids)
    assert set(fan_ids) == set(guest_ids)
    # Past the top N the order is the relevance order.
    assert fan_ids[TOP_N:] == guest_ids[TOP_N:]
    first = _search(reader, text, filters, fan, limit=limit)
    assert first.total == _search(reader, text, filters, limit=limit).total == len(guest_ids)


def test_explicit_sorts_and_browsing_are_never_reranked(
    catalog: tuple[Reader, list[ProductSource]],
) -> None:
    reader, sources = catalog
    fan = Affinity(brands={s.brand_slug: 1.0 for s in sources[:20] if s.brand_slug})
    for sort in ("price_asc", "price_desc", "newest", "rating", "best_selling"):
        assert _all_ids(reader, "designed", q.Filters(), fan, sort=sort) == _all_ids(
            reader, "designed", q.Filters(), sort=sort
        )
    browse = _search(reader, "", q.Filters(category="home-kitchen"), fan)
    assert not browse.personalized
    assert browse.ids == _search(reader, "", q.Filters(category="home-kitchen")).ids


def _facets_and_total(result: q.SearchResult) -> tuple[Any, int, str]:
    return result.facets, result.total, result.matched


weights = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_affinity_changes_what_matches_the_total_or_the_facets(
    catalog: tuple[Reader, list[ProductSource]], data: st.DataObject
) -> None:
    reader, sources = catalog
    brand_slugs = sorted({s.brand_slug for s in sources if s.brand_slug})
    category_slugs = sorted({slug for s in sources for slug, _ in s.categories})
    affinity = Affinity(
        brands=data.draw(st.dictionaries(st.sampled_from(brand_slugs), weights, max_size=8)),
        categories=data.draw(st.dictionaries(st.sampled_from(category_slugs), weights, max_size=8)),
    )
    text, filters = data.draw(st.sampled_from(QUERIES))
    limit = data.draw(st.sampled_from([5, 13, 24, 60]))
    guest = _search(reader, text, filters, limit=limit)
    fan = _search(reader, text, filters, affinity, limit=limit)
    assert _facets_and_total(fan) == _facets_and_total(guest)
    fan_ids = _all_ids(reader, text, filters, affinity, limit=limit)
    guest_ids = _all_ids(reader, text, filters, limit=limit)
    assert Counter(fan_ids) == Counter(guest_ids)
    assert len(set(fan_ids)) == len(fan_ids)
