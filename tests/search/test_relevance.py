"""Relevance on the 20,000-product demo catalog: queries with known targets, recall@10.

Built straight from the catalog's generator (no database: this checks the index and the query
side, so it runs once, not per backend). Query kinds, 200 each:

* exact titles: the target is the product, or any product with the very same title (the words
  cannot tell those apart);
* brand + type ("acme kettle"): the targets are that brand's products of that type;
* one typo in a title word of five letters or more (a substitution, deletion, insertion or
  transposition): targets as for exact titles;
* synonyms: a sneakers title with "Trainers" for "Sneakers" (and the other way round) finds its
  product once "sneakers ⇄ trainers" is a group.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mercato.search import query as q
from mercato.search.demo import generated_sources
from mercato.search.engine import IndexStore, ProductSource, Reader, SearchEngine, VersionBuilder

pytestmark = pytest.mark.slow

PRODUCTS = 20_000
QUERIES = 200
Target = Callable[[ProductSource], bool]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> tuple[Reader, list[ProductSource]]:
    store = IndexStore(Path(tmp_path_factory.mktemp("relevance")) / "search")
    builder = VersionBuilder(store)
    sources = []
    for source in generated_sources(PRODUCTS, seed=42, currency="EUR"):
        builder.add(source)
        sources.append(source)
    builder.finish(datetime.now(UTC))
    reader = SearchEngine(store).reader()
    assert reader is not None
    return reader, sources


def _recall(
    reader: Reader,
    queries: Sequence[tuple[str, Target]],
    by_id: dict[str, ProductSource],
    synonyms: q.Synonyms = q.EMPTY_SYNONYMS,
) -> float:
    found = 0
    misses = []
    for text, is_target in queries:
        result = q.search(
            reader,
            q.SearchRequest(q=text, limit=10, facets=frozenset(), snippets=False, currency="EUR"),
            secret_key="relevance",
            synonyms=synonyms,
        )
        if any(is_target(by_id[i]) for i in result.ids):
            found += 1
        else:
            misses.append(text)
    print(f"recall@10 {found}/{len(queries)}; missed e.g. {misses[:5]}")
    return found / len(queries)


def _same_title(target: ProductSource) -> Target:
    return lambda p: p.id == target.id or p.title.lower() == target.title.lower()


def _typo(word: str, rng: random.Random) -> str:
    at = rng.randrange(1, len(word) - 1)
    kind = rng.choice(("substitute", "delete", "insert", "transpose"))
    letter = rng.choice(string.ascii_lowercase)
    if kind == "substitute":
        letter = rng.choice([c for c in string.ascii_lowercase if c != word[at].lower()])
        return word[:at] + letter + word[at + 1 :]
    if kind == "delete":
        return word[:at] + word[at + 1 :]
    if kind == "insert":
        return word[:at] + letter + word[at:]
    return word[: at - 1] + word[at] + word[at - 1] + word[at + 1 :]


def test_exact_titles_brand_and_type_typos_and_synonyms(
    catalog: tuple[Reader, list[ProductSource]],
) -> None:
    reader, sources = catalog
    by_id = {s.id: s for s in sources}
    rng = random.Random(7)
    sample = rng.sample(sources, QUERIES)

    exact = [(p.title, _same_title(p)) for p in sample]
    assert _recall(reader, exact, by_id) >= 0.95

    brand_type = []
    for p in rng.sample(sources, QUERIES):
        noun = p.categories[-1][1].split()[-1]  # "Kettles", "Headphones", "Cookbooks"...
        brand, leaf = p.brand_slug, p.categories[-1][0]
        brand_type.append(
            (
                f"{p.brand_name} {noun}",
                lambda s, b=brand, c=leaf: s.brand_slug == b and s.categories[-1][0] == c,
            )
        )
    assert _recall(reader, brand_type, by_id) >= 0.95

    typos = []
    for p in rng.sample(sources, QUERIES):
        words = p.title.split()
        long_words = [i for i, w in enumerate(words) if len(w) >= 5 and w.isalpha()]
        if not long_words:
            continue
        i = rng.choice(long_words)
        words[i] = _typo(words[i], rng)
        typos.append((" ".join(words), _same_title(p)))
    assert len(typos) >= QUERIES * 0.8
    assert _recall(reader, typos, by_id) >= 0.9

    swapped = {"Sneakers": "Trainers", "Trainers": "Sneakers"}
    shoes = [p for p in sources if p.title.split()[-1] in swapped or _series(p) in swapped]
    synonym_queries = [
        (" ".join(swapped.get(w, w) for w in p.title.split()), _same_title(p))
        for p in rng.sample(shoes, min(QUERIES, len(shoes)))
    ]
    without = _recall(reader, synonym_queries, by_id)
    groups = q.Synonyms.of([["sneakers", "trainers"], ["tv", "television"]])
    with_groups = _recall(reader, synonym_queries, by_id, groups)
    assert with_groups >= 0.9 and with_groups > without


def _series(p: ProductSource) -> str:
    words = p.title.split()
    return words[-2] if len(words) >= 2 else ""
