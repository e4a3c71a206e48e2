"""Turning a shopper's words and filters into Tantivy queries, and the answer into plain data.

User text never reaches a query parser: it is split into words by the same analysers the index
uses, and every query is built with Tantivy's query objects. So quotes, colons, brackets, stars
and tildes are just punctuation, and no engine error can be provoked by what a shopper types.

Relevance: BM25 over the title (x3), brand (x2), and the description with the category names
and attribute values (x1). Every word must match (in any of those, or through a synonym); a
word that matches nothing is replaced by its nearest spelling in the index (or retried as a
fuzzy term) and the answer says what was searched instead; if all the words together still
match nothing, any word may match (``matched: "any"``).

Availability is for the shopper's destination (:class:`Reach`) when the request names one: a
product is in stock there when a warehouse shipping there holds units of one of its variants
(the index keeps, per product, the warehouses holding units; the storefront maps the country to
the warehouses shipping there). The in-stock filter, its facet count, each hit's ``in_stock``
and the ranking's stock bonus all read it that way.

The default ranking (``relevance`` with words) blends that text relevance with the sales rank
and availability: score = BM25 + ``STOCK_BONUS`` when in stock + ``SALES_BONUS`` for each sales
tier the product's sales rank reaches (``engine.SALES_TIERS``: 1, 3, 10, ... 1000, about one
step per tripling). The bonuses are constant-score clauses that only add to documents the
words already matched, so they change the order, never the matching set, and they are small
next to the BM25 gap between a title match and a description match: among about equally
relevant products, best sellers and products in stock come first. Products that score the
same are ordered by sales rank (the index keeps each segment's documents best sellers first,
and Tantivy breaks score ties by document order). Without words, ``relevance`` is
``best_selling``: by sales rank.

For a signed-in customer, the top of a ``relevance`` answer with words is then re-ordered by
their brand and category affinities (:mod:`~mercato.search.personal`, :func:`personal_page`);
the matching set, and so the total and the facets, never depend on them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import tantivy
from itsdangerous import BadSignature, URLSafeSerializer
from tantivy import FieldType, Occur, Order, Query

from mercato.money import format_minor, round_unit
from mercato.problems import Problem
from mercato.search.engine import (
    ATTRIBUTE_SLOTS,
    BONUS_FIELDS,
    FLAGS,
    IN_STOCK,
    MATCH_FIELD,
    MORE_ATTRIBUTES,
    OUT_OF_STOCK,
    PLAIN_ANALYZER,
    PRICE_STEPS,
    RATING_THRESHOLDS,
    SALES_TIERS,
    SCHEMA,
    SEP,
    SHORT_FIELDS,
    STEM_ANALYZER,
    STOCK_SET,
    STOCKED_IN,
    Reader,
    Snapshot,
    rating_term,
    sales_term,
)
from mercato.search.personal import NO_AFFINITY, TOP_N, Affinity, Candidate, personal_order

MAX_QUERY_CHARS = 200
MAX_WORDS = 10
MAX_LIMIT = 100
MAX_OFFSET = 10_000
LITTLE = 3  # a word found in fewer documents than this is worth a "did you mean"
FUZZY_WEIGHT = 0.1  # fuzzy matches score a constant; keep them below any real BM25 match
SYNONYM_WEIGHT = 0.9
ATTRIBUTE_FACETS = 8
TERMS_SIZE = 65_000  # far above the distinct values a facet can have: counts stay exact
VOCABULARY_TTL = 60.0
SUGGEST_PRODUCTS = 8
SUGGEST_GROUPS = 5

STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "by", "for", "from", "in", "into", "is", "of"}
    | {"on", "or", "the", "to", "with", "without"}
)
FACETS = ("brand", "category", "price", "rating", "in_stock", "attributes")
SORTS = ("relevance", "best_selling", "price_asc", "price_desc", "newest", "rating")
Sort = Literal["relevance", "best_selling", "price_asc", "price_desc", "newest", "rating"]
STOCK_BONUS = 0.5
SALES_BONUS = 0.1
RATING_STEPS = (4, 3, 2, 1)

# (fast field, ascending) per keyset sort; relevance without words is "best sellers first".
KEYSET: dict[str, tuple[str, bool]] = {
    "price_asc": ("key_price", True),
    "price_desc": ("key_price", False),
    "newest": ("key_newest", False),
    "rating": ("key_rating", False),
    "best_selling": ("key_sales", False),
    "relevance": ("key_sales", False),
}


# --------------------------------------------------------------------------------------------
# Words


@dataclass(frozen=True, slots=True)
class Word:
    text: str  # lower case, accents folded: what the shopper typed
    stem: str  # the indexed form

    @property
    def optional(self) -> bool:
        return self.text in STOPWORDS


def stem(word: str) -> str:
    stems = STEM_ANALYZER.analyze(word)
    return stems[0] if stems else word


def words_of(text: str) -> list[Word]:
    """The shopper's words, as the index's analysers split them (anything else is dropped)."""
    return [Word(w, stem(w)) for w in PLAIN_ANALYZER.analyze(text)[:MAX_WORDS]]


def fuzzy_distance(word: str) -> int:
    """Edit distance allowed when a word matches nothing: 1 for 4-7 letters, 2 beyond."""
    if len(word) < 4:
        return 0
    return 1 if len(word) <= 7 else 2


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Damerau-Levenshtein (adjacent transpositions count once); ``limit + 1`` when above."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[len(b)], limit + 1)


# --------------------------------------------------------------------------------------------
# Synonyms


@dataclass(frozen=True)
class Synonyms:
    """Groups of interchangeable terms, matched on stems so that "trainer" finds "sneakers"
    when "trainers" and "sneakers" form a group."""

    groups: tuple[tuple[tuple[str, ...], ...], ...] = ()
    _by_first: dict[str, list[tuple[tuple[str, ...], int]]] = field(
        default_factory=dict, compare=False
    )

    @classmethod
    def of(cls, groups: Iterable[Sequence[str]]) -> Synonyms:
        stemmed: list[tuple[tuple[str, ...], ...]] = []
        for group in groups:
            members = tuple(
                dict.fromkeys(t for t in (tuple(w.stem for w in words_of(term)) for term in group))
            )
            members = tuple(m for m in members if m)
            if len(members) >= 2:
                stemmed.append(members)
        by_first: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for index, members in enumerate(stemmed):
            for member in members:
                by_first.setdefault(member[0], []).append((member, index))
        for entries in by_first.values():
            entries.sort(key=lambda e: -len(e[0]))  # longest phrase first
        return cls(tuple(stemmed), by_first)

    def match(self, stems: Sequence[str], start: int) -> tuple[int, list[tuple[str, ...]]]:
        """How many words from ``start`` a synonym phrase covers, and the other members."""
        for member, index in self._by_first.get(stems[start], ()):
            if tuple(stems[start : start + len(member)]) == member:
                return len(member), [m for m in self.groups[index] if m != member]
        return 1, []


EMPTY_SYNONYMS = Synonyms.of(())


# --------------------------------------------------------------------------------------------
# Queries


def _boost(query: Query, weight: float) -> Query:
    return query if weight == 1.0 else Query.boost_query(query, weight)


def _should(queries: Sequence[Query]) -> Query:
    if len(queries) == 1:
        return queries[0]
    return Query.boolean_query([(Occur.Should, q) for q in queries])


def _term(field_name: str, value: Any) -> Query:
    return Query.term_query(SCHEMA, field_name, value)


def exact_clause(stems: Sequence[str], weight: float = 1.0, *, ranked: bool = True) -> Query:
    """The words in the match field (a phrase when several), with a bonus where the title or
    brand has them too. The bonus clauses are optional: they never widen the match, and are
    only looked at for documents the match field already selected; ``ranked=False`` leaves them
    out for the passes that only need the matching set (counts, facets, field-sorted pages)."""

    def words_in(name: str) -> Query:
        if len(stems) == 1:
            return _term(name, stems[0])
        return Query.phrase_query(SCHEMA, name, list(stems))

    if not ranked:
        return words_in(MATCH_FIELD)
    clauses = [(Occur.Must, _boost(words_in(MATCH_FIELD), weight))]
    clauses += [
        (Occur.Should, _boost(words_in(name), bonus * weight))
        for name, bonus in BONUS_FIELDS.items()
    ]
    return Query.boolean_query(clauses)


def fuzzy_clause(word: Word, distance: int) -> Query:
    parts = []
    for name in SHORT_FIELDS:
        for text in dict.fromkeys((word.stem, word.text)):
            fuzzy = Query.fuzzy_term_query(SCHEMA, name, text, distance, True, False)
            parts.append(_boost(fuzzy, FUZZY_WEIGHT * (1 + BONUS_FIELDS.get(name, 0.0))))
    return _should(parts)


def doc_freq(searcher: tantivy.Searcher, stem_: str) -> int:
    return int(searcher.doc_freq(MATCH_FIELD, stem_))


class Vocabulary:
    """The index's own words (titles, brand and category names, attribute and option values)
    with their document counts, in a small in-memory Tantivy index so that a misspelt word's
    neighbours are found by Tantivy's Levenshtein automata, not by comparing strings in Python."""

    def __init__(self, words: Mapping[str, int]) -> None:
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("word", stored=True, tokenizer_name="raw", index_option="basic")
        builder.add_unsigned_field("df", stored=True, fast=True)
        self.schema = builder.build()
        self.index = tantivy.Index(self.schema)
        writer = self.index.writer(15_000_000, 1)
        for word, count in words.items():
            doc = tantivy.Document()
            doc.add_text("word", word)
            doc.add_unsigned("df", count)
            writer.add_document(doc)
        writer.commit()
        writer.wait_merging_threads()
        self.index.reload()
        self.built = time.monotonic()
        self.size = len(words)

    @classmethod
    def of(cls, searcher: tantivy.Searcher) -> Vocabulary:
        words: dict[str, int] = {}

        def add(word: str, count: int) -> None:
            if len(word) >= 2 and not word.isdigit():
                words[word] = max(words.get(word, 0), count)

        for term, count in searcher.terms_with_prefix("title_plain", "", limit=None):
            add(term, count)
        for term, count in searcher.terms_with_prefix("suggest", "", limit=None):
            parts = term.split(SEP)
            if len(parts) == 4:
                add(parts[1], count)
        for name in ("attrs", "options"):
            for term, count in searcher.terms_with_prefix(name, "", limit=None):
                for word in PLAIN_ANALYZER.analyze(term.partition(SEP)[2]):
                    add(word, count)
        return cls(words)

    def neighbours(self, word: str, distance: int) -> list[tuple[str, int, int]]:
        """(word, edit distance, document count) of the known words within ``distance``."""
        query = Query.fuzzy_term_query(self.schema, "word", word, distance, True, False)
        searcher = self.index.searcher()
        found = searcher.search(query, 50, count=False, weight_by_field="df")
        near = []
        for _, address in found.hits:
            doc = searcher.doc(address)
            candidate, count = str(doc.get_first("word")), int(doc.get_first("df") or 0)
            d = edit_distance(candidate, word, distance)
            if candidate != word and d <= distance:
                near.append((candidate, d, count))
        return sorted(near, key=lambda n: (n[1], -n[2], n[0]))


def vocabulary_for(reader: Reader) -> Vocabulary:
    """The reader's vocabulary, rebuilt at most every ``VOCABULARY_TTL`` seconds."""
    cached = reader.cache.get("vocabulary")
    if isinstance(cached, Vocabulary) and time.monotonic() - cached.built < VOCABULARY_TTL:
        return cached
    vocabulary = Vocabulary.of(reader.searcher())
    reader.cache["vocabulary"] = vocabulary
    return vocabulary


@dataclass
class Unit:
    """One or more of the shopper's words that match together (a synonym phrase)."""

    words: list[Word]
    alternatives: list[tuple[str, ...]]
    correction: str | None = None  # the word searched instead of a misspelt one
    fuzzy: int = 0  # edit distance of the fuzzy alternative, 0 for none
    suggestion: str | None = None  # a likelier spelling of a rare word ("did you mean")

    @property
    def optional(self) -> bool:
        return all(w.optional for w in self.words)

    @property
    def display(self) -> str:
        return self.correction or " ".join(w.text for w in self.words)

    @property
    def stems(self) -> tuple[str, ...]:
        if self.correction is not None:
            return (stem(self.correction),)
        return tuple(w.stem for w in self.words)

    @property
    def key(self) -> Hashable:
        """What :meth:`clause` searches: equal keys, equal clauses."""
        fuzzy = (self.fuzzy, self.words[0].stem, self.words[0].text) if self.fuzzy else None
        return (self.stems, tuple(self.alternatives), fuzzy)

    def clause(self, *, ranked: bool = True) -> Query:
        stems = list(self.stems)
        parts = [exact_clause(stems, ranked=ranked)]
        parts += [exact_clause(alt, SYNONYM_WEIGHT, ranked=ranked) for alt in self.alternatives]
        if self.fuzzy:
            parts.append(fuzzy_clause(self.words[0], self.fuzzy))
        return _should(parts)


def plan_units(
    searcher: tantivy.Searcher,
    words: Sequence[Word],
    synonyms: Synonyms,
    vocabulary: Callable[[], Vocabulary],
) -> list[Unit]:
    """Group the words (synonym phrases), then look at how often each single word occurs:
    a word found nowhere is replaced by its nearest known spelling (or, lacking one, matched
    as a fuzzy term); a rare one is also matched fuzzily and gets a "did you mean"."""
    stems = [w.stem for w in words]
    units: list[Unit] = []
    i = 0
    while i < len(words):
        span, alternatives = synonyms.match(stems, i)
        units.append(Unit(list(words[i : i + span]), alternatives))
        i += span
    for unit in units:
        if len(unit.words) != 1 or unit.alternatives or unit.optional:
            continue
        word = unit.words[0]
        distance = fuzzy_distance(word.text)
        if distance == 0:
            continue
        df = doc_freq(searcher, word.stem)
        if df >= LITTLE:
            continue
        near = vocabulary().neighbours(word.text, distance)
        if df == 0:
            if near:
                unit.correction = near[0][0]
            else:
                unit.fuzzy = distance
            continue
        unit.fuzzy = distance
        likelier = [n for n in near if n[2] >= 10 * df]
        if likelier:
            unit.suggestion = likelier[0][0]
    return units


def text_query(units: Sequence[Unit], match_all: bool, *, ranked: bool = True) -> Query:
    """Every (or, when not ``match_all``, any) unit. Units that would search the very same
    thing ("game games": one stem) are matched once, as if typed once: a repeated word says
    nothing more about what the shopper wants, and weighting it would tip the balance between
    relevance and the ranking's stock and sales bonuses (and the posting list is not walked
    twice)."""
    required = [u for u in units if not u.optional] or list(units)
    merged: dict[Hashable, tuple[bool, Unit]] = {}
    for unit in units:
        must = match_all and unit in required
        seen = merged.get(unit.key)
        merged[unit.key] = (must, unit) if seen is None else (seen[0] or must, seen[1])
    clauses = [
        (Occur.Must if must else Occur.Should, unit.clause(ranked=ranked))
        for must, unit in merged.values()
    ]
    if len(clauses) == 1:
        return clauses[0][1]
    return Query.boolean_query(clauses)


# --------------------------------------------------------------------------------------------
# Where the shopper is


@dataclass(frozen=True)
class Reach:
    """A destination as the index sees it: the country, and the ids of the active warehouses
    shipping there (sorted). For it, "in stock" means units in one of those warehouses: the
    in-stock filter, its facet count, the hits' ``in_stock`` and the ranking's stock bonus."""

    country: str
    warehouses: tuple[str, ...]

    def stocked(self) -> Query | None:
        """The products in stock here; None when no warehouse ships here (none is)."""
        return _stocked_query(self.warehouses)

    def holds(self, stock_set: str | None) -> bool:
        """Whether a product whose stock lies in ``stock_set`` (``engine.STOCK_SET``) is in
        stock here."""
        if not stock_set:
            return False
        return not set(self.warehouses).isdisjoint(stock_set.split(SEP))


@functools.lru_cache(maxsize=256)
def _stocked_query(warehouses: tuple[str, ...]) -> Query | None:
    # Term queries rather than a term-set query: those skip through their posting lists,
    # where a term set first marks every document of every term in a bitset.
    if not warehouses:
        return None
    return _should([_term(STOCKED_IN, w) for w in warehouses])


# --------------------------------------------------------------------------------------------
# Filters


@dataclass(frozen=True)
class Filters:
    category: str | None = None
    brands: tuple[str, ...] = ()
    min_price: int | None = None
    max_price: int | None = None
    currency: str | None = None
    rating_gte: float | None = None
    in_stock: bool | None = None
    attributes: Mapping[str, Sequence[str]] = field(default_factory=dict)
    reach: Reach | None = None
    """Where the shopper is; None: stock anywhere counts (no destination)."""

    def clauses(self) -> list[tuple[Occur, Query]]:
        """The filters as boolean clauses: each narrows (``Must``), or rules out a small set
        (``MustNot``), which costs less than requiring a set that holds most products."""
        found: list[tuple[Occur, Query]] = []
        if self.category:
            found.append((Occur.Must, _term("category_slugs", self.category)))
        if self.brands:
            found.append((Occur.Must, _should([_term("brand_slug", b) for b in self.brands])))
        if self.min_price is not None or self.max_price is not None:
            price = Query.range_query(
                SCHEMA,
                "price_min",
                FieldType.Unsigned,
                lower_bound=self.min_price,
                upper_bound=self.max_price,
            )
            found.append((Occur.Must, price))
        if self.currency:
            found.append((Occur.Must, _term("currency", self.currency)))
        if self.rating_gte is not None:
            found += [(Occur.Must, q) for q in rating_filters(self.rating_gte)]
        if self.in_stock is not None:
            found += stock_clauses(self.in_stock, self.reach)
        for name, values in sorted(self.attributes.items()):
            pairs = [f"{name}{SEP}{v}" for v in values]
            found.append(
                (
                    Occur.Must,
                    _should([_term(f, pair) for pair in pairs for f in ("attrs", "options")]),
                )
            )
        return found

    def fingerprint_data(self) -> list[Any]:
        return [
            self.category,
            sorted(self.brands),
            self.min_price,
            self.max_price,
            self.currency,
            self.rating_gte,
            self.in_stock,
            sorted((k, sorted(v)) for k, v in self.attributes.items()),
            self.reach.country if self.reach else None,
        ]


def rating_filters(gte: float) -> list[Query]:
    """Rated ``gte`` or better. Whole stars are one indexed term; a fraction (3.5) narrows
    with the term for the star below it, then checks the rating column."""
    exact = Query.range_query(SCHEMA, "rating", FieldType.Float, lower_bound=float(gte))
    if not math.isfinite(gte):
        return [exact]
    whole = math.floor(gte)
    if gte == whole and whole in RATING_THRESHOLDS:
        return [_term(FLAGS, rating_term(whole))]
    if whole in RATING_THRESHOLDS:
        return [_term(FLAGS, rating_term(whole)), exact]
    return [exact]


def stock_clause(in_stock: bool) -> tuple[Occur, Query]:
    """Stock anywhere. Most products are in stock: "in stock" is "not sold out" (skipping
    through the short list of sold-out products), "sold out" is that list itself."""
    if in_stock:
        return Occur.MustNot, _term(FLAGS, OUT_OF_STOCK)
    return Occur.Must, _term(FLAGS, OUT_OF_STOCK)


def stock_clauses(in_stock: bool, reach: Reach | None) -> list[tuple[Occur, Query]]:
    """In stock (or not) for the destination: units in (none of) the warehouses shipping
    there; where none ships, nothing is in stock and everything is out of stock."""
    if reach is None:
        return [stock_clause(in_stock)]
    stocked = reach.stocked()
    if stocked is None:
        return [(Occur.Must, Query.empty_query())] if in_stock else []
    return [(Occur.Must if in_stock else Occur.MustNot, stocked)]


def combine(text: Query | None, filters: Sequence[tuple[Occur, Query]]) -> Query:
    if text is None and not filters:
        return Query.all_query()
    clauses = [(Occur.Must, text)] if text is not None else []
    # Filters only narrow: a constant score keeps them out of the ranking.
    clauses += [
        (occur, Query.const_score_query(f, 0.0) if occur == Occur.Must else f)
        for occur, f in filters
    ]
    if not any(occur == Occur.Must for occur, _ in clauses):
        # Only exclusions: they need a set to exclude from.
        clauses.insert(0, (Occur.Must, Query.all_query()))
    if len(clauses) == 1 and text is not None:
        return text
    return Query.boolean_query(clauses)


@functools.lru_cache(maxsize=256)
def _ranking_bonuses(warehouses: tuple[str, ...] | None) -> tuple[tuple[Occur, Query], ...]:
    stocked = _term(FLAGS, IN_STOCK) if warehouses is None else _stocked_query(warehouses)
    bonuses = []
    if stocked is not None:
        bonuses.append((Occur.Should, Query.const_score_query(stocked, STOCK_BONUS)))
    bonuses += [
        (Occur.Should, Query.const_score_query(_term(FLAGS, sales_term(tier)), SALES_BONUS))
        for tier in SALES_TIERS
    ]
    return tuple(bonuses)


def blended(ranked: Query, reach: Reach | None = None) -> Query:
    """The default ranking: the words' relevance, plus the availability (for the destination,
    when there is one) and sales bonuses (optional clauses: they never widen the matching
    set)."""
    bonuses = _ranking_bonuses(reach.warehouses if reach is not None else None)
    return Query.boolean_query([(Occur.Must, ranked), *bonuses])


# --------------------------------------------------------------------------------------------
# Cursors


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt="search-cursor")


def invalid_cursor() -> Problem:
    return Problem(400, "invalid_cursor", "The cursor is invalid or was not issued for this query")


@dataclass(frozen=True)
class Cursor:
    sort: str
    fingerprint: str
    offset: int = 0  # relevance with words: how many hits came before
    key: int | None = None  # keyset sorts: the last hit's sort key
    seen: tuple[str, ...] = ()  # ...and the ids already shown with that key
    any: bool = False  # the first page found nothing with every word: any word may match


def encode_cursor(secret_key: str, cursor: Cursor) -> str:
    data: dict[str, Any] = {"s": cursor.sort, "f": cursor.fingerprint}
    if cursor.any:
        data["a"] = 1
    if cursor.key is None:
        data["o"] = cursor.offset
    else:
        data["k"] = cursor.key
        data["i"] = list(cursor.seen)
    return str(_serializer(secret_key).dumps(data))


def is_search_cursor(secret_key: str, token: str) -> bool:
    try:
        _serializer(secret_key).loads(token)
    except BadSignature:
        return False
    return True


def decode_cursor(secret_key: str, token: str, sort: str, fingerprint: str) -> Cursor:
    try:
        data = _serializer(secret_key).loads(token)
    except BadSignature as exc:
        raise invalid_cursor() from exc
    if not isinstance(data, dict) or data.get("s") != sort or data.get("f") != fingerprint:
        raise invalid_cursor()
    if data.get("a", 0) not in (0, 1) or isinstance(data.get("a"), bool):
        raise invalid_cursor()
    any_ = data.get("a") == 1
    if "o" in data:
        offset = data["o"]
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise invalid_cursor()
        return Cursor(sort, fingerprint, offset=offset, any=any_)
    key, seen = data.get("k"), data.get("i")
    if (
        not isinstance(key, int)
        or isinstance(key, bool)
        or key < 0
        or not isinstance(seen, list)
        or not 1 <= len(seen) <= MAX_LIMIT
        or not all(isinstance(s, str) and len(s) <= 64 for s in seen)
    ):
        raise invalid_cursor()
    return Cursor(sort, fingerprint, key=key, seen=tuple(seen), any=any_)


# --------------------------------------------------------------------------------------------
# Running a search


@dataclass(frozen=True)
class SearchRequest:
    currency: str = field(kw_only=True)  # the shop's: the price facet's, unless filters name one
    q: str = ""
    filters: Filters = field(default_factory=Filters)
    sort: str = "relevance"
    limit: int = 24
    cursor: str | None = None
    facets: frozenset[str] = frozenset(FACETS)
    snippets: bool = True
    country: str | None = None
    """The shopper's destination: the storefront sets ``filters.reach`` from it."""
    user_id: str | None = None
    """The signed-in customer: the storefront reads their affinities, which re-order the top
    of a relevance-ranked answer (:mod:`~mercato.search.personal`); None for a guest."""


@dataclass
class Plan:
    words: list[Word]
    units: list[Unit]
    base: Query  # words and filters, ranked: what a relevance-sorted page is taken from
    text: Query | None
    matching: Query  # the same matching set without ranking extras: counts, facets, field sorts
    matched: Literal["all", "any"]
    fingerprint: str
    filter_queries: list[tuple[Occur, Query]]
    reach: Reach | None = None


@dataclass
class Page:
    addresses: list[tuple[tantivy.DocAddress, int | None]]  # (address, keyset key)
    docs: list[tantivy.Document]
    more: bool
    personalized: bool = False  # ordered by the customer's affinities


@dataclass
class SearchResult:
    hits: list[dict[str, Any]]
    total: int
    facets: dict[str, Any] | None
    showing_results_for: str | None
    did_you_mean: str | None
    matched: Literal["all", "any"]
    next_cursor: str | None
    ids: list[str]
    personalized: bool = False
    """The page was ordered by the customer's affinities (see :mod:`.personal`)."""


def fingerprint(words: Sequence[Word], filters: Filters) -> str:
    data = json.dumps([[w.text for w in words], filters.fingerprint_data()], sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _count(searcher: tantivy.Searcher, query: Query) -> int:
    # Every document has one facet code: counting that small column's values is cheaper than
    # a counting collector (which also runs a top-1 collector alongside).
    return total_of(searcher.aggregate(query, facet_aggregations(())))


def make_plan(
    searcher: tantivy.Searcher,
    words: list[Word],
    filters: Filters,
    synonyms: Synonyms,
    vocabulary: Callable[[], Vocabulary],
    *,
    match_all: bool = True,
) -> Plan:
    filter_queries = filters.clauses()
    units = plan_units(searcher, words, synonyms, vocabulary) if words else []
    required = [u for u in units if not u.optional]
    match_all = match_all or len(required) < 2
    stamp = fingerprint(words, filters)
    return _plan(words, units, match_all, stamp, filter_queries, filters.reach)


def _plan(
    words: list[Word],
    units: list[Unit],
    match_all: bool,
    stamp: str,
    filter_queries: list[tuple[Occur, Query]],
    reach: Reach | None,
) -> Plan:
    text = text_query(units, match_all=match_all) if units else None
    lean = text_query(units, match_all=match_all, ranked=False) if units else None
    base = combine(text, filter_queries)
    return Plan(
        words,
        units,
        blended(base, reach) if text is not None else base,
        text,
        combine(lean, filter_queries),
        "all" if match_all else "any",
        stamp,
        filter_queries,
        reach,
    )


def relaxed(plan: Plan) -> Plan | None:
    """The plan with any word allowed to match, when every word together matched nothing."""
    if plan.matched == "any" or len([u for u in plan.units if not u.optional]) < 2:
        return None
    return _plan(plan.words, plan.units, False, plan.fingerprint, plan.filter_queries, plan.reach)


def fetch_page(
    searcher: tantivy.Searcher,
    plan: Plan,
    sort: str,
    limit: int,
    cursor: Cursor | None,
    affinity: Affinity = NO_AFFINITY,
) -> Page:
    if sort == "relevance" and plan.text is not None:
        offset = cursor.offset if cursor else 0
        if offset >= MAX_OFFSET:
            return Page([], [], False)
        if affinity and offset < TOP_N:
            return personal_page(searcher, plan, offset, limit, affinity)
        found = searcher.search(plan.base, limit + 1, count=False, offset=offset)
        hits: list[tuple[tantivy.DocAddress, int | None]] = [(a, None) for _, a in found.hits]
    else:
        key_field, ascending = KEYSET[sort]
        query = plan.matching
        if cursor is not None and cursor.key is not None:
            bound = Query.range_query(
                SCHEMA,
                key_field,
                FieldType.Unsigned,
                lower_bound=cursor.key if ascending else None,
                upper_bound=None if ascending else cursor.key,
            )
            clauses = [(Occur.Must, query), (Occur.Must, bound)]
            clauses += [(Occur.MustNot, _term("id", seen)) for seen in cursor.seen]
            query = Query.boolean_query(clauses)
        found = searcher.search(
            query,
            limit + 1,
            count=False,
            order_by_field=key_field,
            order=Order.Asc if ascending else Order.Desc,
        )
        hits = [(address, int(value)) for value, address in found.hits]
    more = len(hits) > limit
    hits = hits[:limit]
    return Page(hits, [searcher.doc(address) for address, _ in hits], more)


def personal_page(
    searcher: tantivy.Searcher, plan: Plan, offset: int, limit: int, affinity: Affinity
) -> Page:
    """A relevance page starting inside the top :data:`~.personal.TOP_N`, from the engine's
    ranking with its top N re-ordered by the customer's affinities and the rest as ranked: one
    search for the top N (or as far as the page reaches past it), the top N's documents read
    once (the re-rank needs their brand and category, the page is some of them)."""
    found = searcher.search(plan.base, max(TOP_N, offset + limit + 1), count=False)
    top = found.hits[:TOP_N]
    top_docs = [searcher.doc(address) for _, address in top]
    order = personal_order(
        [_candidate(score, doc) for (score, _), doc in zip(top, top_docs, strict=True)], affinity
    )
    ranked: list[tuple[tantivy.DocAddress, tantivy.Document | None]]
    ranked = [(top[i][1], top_docs[i]) for i in order]
    ranked += [(address, None) for _, address in found.hits[TOP_N:]]
    window = ranked[offset : offset + limit + 1]
    more = len(window) > limit
    window = window[:limit]
    return Page(
        [(address, None) for address, _ in window],
        [searcher.doc(address) if doc is None else doc for address, doc in window],
        more,
        personalized=True,
    )


def _candidate(score: float, doc: tantivy.Document) -> Candidate:
    brand = _first(doc, "brand")
    return Candidate(
        float(score),
        brand.split(SEP, 1)[0] if brand else None,
        _first(doc, "category", "").split(SEP, 1)[0],
    )


def next_cursor(
    secret_key: str, plan: Plan, sort: str, page: Page, cursor: Cursor | None
) -> str | None:
    if not page.more or not page.addresses:
        return None
    if sort == "relevance" and plan.text is not None:
        offset = (cursor.offset if cursor else 0) + len(page.addresses)
        if offset >= MAX_OFFSET:
            return None
        return encode_cursor(
            secret_key, Cursor(sort, plan.fingerprint, offset=offset, any=plan.matched == "any")
        )
    last_key = page.addresses[-1][1]
    assert last_key is not None
    seen = [
        _first(doc, "id")
        for (_, key), doc in zip(page.addresses, page.docs, strict=True)
        if key == last_key
    ]
    if cursor is not None and cursor.key == last_key:
        seen = list(cursor.seen) + seen  # a run of equal keys spanning pages
    return encode_cursor(
        secret_key,
        Cursor(
            sort,
            plan.fingerprint,
            key=last_key,
            seen=tuple(seen[-MAX_LIMIT:]),
            any=plan.matched == "any",
        ),
    )


def _first(doc: tantivy.Document, name: str, default: Any = None) -> Any:
    value = doc.get_first(name)
    return default if value is None else value


_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mercato-search")


def _facets_or_total(
    snapshot: Snapshot, base: Query, wanted: frozenset[str], reach: Reach | None
) -> tuple[dict[str, Any] | None, int]:
    searcher = snapshot.searcher
    if not wanted:
        return None, _count(searcher, base)
    more = "attributes" in wanted and has_more_attributes(snapshot)
    asked = facet_aggregations(wanted, more_attributes=more, stock_sets=reach is not None)
    raw = searcher.aggregate(base, asked)
    return raw, total_of(raw)


def facet_key(request: SearchRequest) -> tuple[str, str, tuple[str, ...]]:
    """What the facets and total of a request without words depend on, besides the index:
    its filters and the facets asked for (not the sort, the page or the cursor). Browsing
    repeats these a lot, so the snapshot caches them; its cache dies with it when a reload
    brings new documents, so the counts stay exact. Requests with words are too varied to
    be worth keeping."""
    filters = json.dumps(request.filters.fingerprint_data(), sort_keys=True)
    reach = request.filters.reach
    # The in-stock filter's set depends on which warehouses ship to the country, which may
    # change while the documents do not; the counts themselves are read per destination.
    if reach is not None and request.filters.in_stock is not None:
        filters += "|" + SEP.join(reach.warehouses)
    return ("facets", filters, tuple(sorted(request.facets)))


def search(
    reader: Reader,
    request: SearchRequest,
    *,
    secret_key: str,
    synonyms: Synonyms = EMPTY_SYNONYMS,
    affinity: Affinity = NO_AFFINITY,
) -> SearchResult:
    """The request's answer. ``affinity`` (a signed-in customer's) re-orders the top of a
    relevance-ranked answer with words; the matching set, the total and the facets are the
    same whatever it holds."""
    snapshot = reader.snapshot()
    searcher = snapshot.searcher
    words = words_of(request.q)
    cursor = None
    if request.cursor:
        stamp = fingerprint(words, request.filters)
        cursor = decode_cursor(secret_key, request.cursor, request.sort, stamp)
    plan = make_plan(
        searcher,
        words,
        request.filters,
        synonyms,
        lambda: vocabulary_for(reader),
        match_all=not (cursor and cursor.any),
    )
    key = facet_key(request) if not words else None
    counted: tuple[dict[str, Any] | None, int] | None = None
    if key is not None:
        counted = snapshot.results.get(key)
    counting: Future[tuple[dict[str, Any] | None, int]] | None = None
    if counted is None:
        # Tantivy releases the GIL: count the facets on another core while this one finds
        # the page of hits (the answer takes the longer of the two rather than their sum).
        counting = _POOL.submit(
            _facets_or_total, snapshot, plan.matching, request.facets, plan.reach
        )
    page = fetch_page(searcher, plan, request.sort, request.limit, cursor, affinity)
    if cursor is None and not page.addresses:
        # Nothing on the first page means nothing at all: let any word match instead.
        wider = relaxed(plan)
        if wider is not None:
            plan = wider
            counting = _POOL.submit(
                _facets_or_total, snapshot, plan.matching, request.facets, plan.reach
            )
            page = fetch_page(searcher, plan, request.sort, request.limit, cursor, affinity)
    if counting is not None:
        counted = counting.result()
        if key is not None:
            snapshot.results.put(key, counted)
    assert counted is not None
    raw, total = counted
    price_currency = request.filters.currency or request.currency
    reach = request.filters.reach
    facets = read_facets(raw, request.facets, price_currency, reach) if raw else None
    hits = present_hits(searcher, plan, page, request.snippets)
    corrected = [u for u in plan.units if u.correction]
    suggested = [u for u in plan.units if u.suggestion]
    showing = " ".join(u.display for u in plan.units) if corrected and total else None
    did_you_mean = " ".join(u.suggestion or u.display for u in plan.units) if suggested else None
    return SearchResult(
        hits=hits,
        total=total,
        facets=facets,
        showing_results_for=showing,
        did_you_mean=did_you_mean,
        matched=plan.matched,
        next_cursor=next_cursor(secret_key, plan, request.sort, page, cursor),
        ids=[_first(doc, "id") for doc in page.docs],
        personalized=page.personalized,
    )


def list_ids(
    reader: Reader,
    filters: Filters,
    sort: str,
    limit: int,
    cursor_token: str | None,
    *,
    secret_key: str,
) -> tuple[list[str], str | None]:
    """A browsing page (no words, no facets): product ids in order and the next cursor."""
    searcher = reader.searcher()
    plan = make_plan(searcher, [], filters, EMPTY_SYNONYMS, lambda: vocabulary_for(reader))
    cursor = None
    if cursor_token:
        cursor = decode_cursor(secret_key, cursor_token, sort, plan.fingerprint)
    page = fetch_page(searcher, plan, sort, limit, cursor)
    ids = [_first(doc, "id") for doc in page.docs]
    return ids, next_cursor(secret_key, plan, sort, page, cursor)


# --------------------------------------------------------------------------------------------
# Facets


def facet_aggregations(
    wanted: Iterable[str], *, more_attributes: bool = True, stock_sets: bool = False
) -> dict[str, Any]:
    """One aggregation request for the wanted facets (and the total: every document has
    exactly one ``facet_code``, so its buckets add up to the number of matches). Attributes
    are counted per slot column; ``more_attributes=False`` leaves out the overflow column when
    no product uses it. ``stock_sets``: count the in-stock facet per warehouse set (for a
    destination) rather than anywhere."""
    terms = {"size": TERMS_SIZE, "segment_size": TERMS_SIZE}
    wanted = set(wanted)
    aggregations: dict[str, Any] = {"codes": {"terms": {"field": "facet_code", **terms}}}
    for name in ("brand", "category"):
        if name in wanted:
            aggregations[name] = {"terms": {"field": name, **terms}}
    if "attributes" in wanted:
        columns = [*ATTRIBUTE_SLOTS, *([MORE_ATTRIBUTES] if more_attributes else [])]
        for column in columns:
            aggregations[column] = {"terms": {"field": column, **terms}}
    if "in_stock" in wanted and stock_sets:
        aggregations[STOCK_SET] = {"terms": {"field": STOCK_SET, **terms}}
    return aggregations


def has_more_attributes(snapshot: Snapshot) -> bool:
    """Whether any product of this snapshot has more attributes than there are slots."""
    key = ("has-terms", MORE_ATTRIBUTES)
    found = snapshot.results.get(key)
    if found is None:
        found = bool(snapshot.searcher.terms_with_prefix(MORE_ATTRIBUTES, "", limit=1))
        snapshot.results.put(key, found)
    return bool(found)


def _buckets(raw: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    return list(raw.get(name, {}).get("buckets", []))


def total_of(raw: Mapping[str, Any]) -> int:
    return sum(int(b["doc_count"]) for b in _buckets(raw, "codes"))


def stock_counts(raw: Mapping[str, Any], reach: Reach | None, total: int) -> dict[str, int]:
    """The in-stock facet: for a destination, the products whose warehouse set holds one of
    its warehouses (each product has one set, so the sum is exact); anywhere otherwise."""
    if reach is None:
        stock: Counter[int] = Counter()
        for b in _buckets(raw, "codes"):
            stock[int(b["key"]) % 10] += int(b["doc_count"])
        return {"in_stock": stock[1], "out_of_stock": stock[0]}
    held = sum(int(b["doc_count"]) for b in _buckets(raw, STOCK_SET) if reach.holds(b["key"]))
    return {"in_stock": held, "out_of_stock": total - held}


def read_facets(
    raw: Mapping[str, Any], wanted: Iterable[str], currency: str, reach: Reach | None = None
) -> dict[str, Any]:
    wanted = set(wanted)
    facets: dict[str, Any] = {}
    prices: Counter[int] = Counter()
    ratings: Counter[int] = Counter()
    for b in _buckets(raw, "codes"):
        code, count = int(b["key"]), int(b["doc_count"])
        prices[code // 100] += count
        ratings[code // 10 % 10] += count
    if "brand" in wanted:
        brands = []
        for b in _buckets(raw, "brand"):
            slug, _, label = str(b["key"]).partition(SEP)
            brands.append({"value": slug, "label": label, "count": int(b["doc_count"])})
        facets["brand"] = sorted(brands, key=lambda b: (-b["count"], b["label"]))
    if "category" in wanted:
        facets["category"] = _category_facet(_buckets(raw, "category"))
    if "price" in wanted:
        unit = round_unit(currency)
        edges = [0, *(step * unit for step in PRICE_STEPS)]
        facets["price"] = [
            {
                "from": format_minor(edges[i], currency),
                "to": format_minor(edges[i + 1], currency) if i + 1 < len(edges) else None,
                "count": prices[i],
            }
            for i in sorted(prices)
            if prices[i]
        ]
    if "rating" in wanted:
        facets["rating"] = [
            {"gte": step, "count": sum(ratings[r] for r in range(step, 5))} for step in RATING_STEPS
        ]
    if "in_stock" in wanted:
        facets["in_stock"] = stock_counts(raw, reach, total_of(raw))
    if "attributes" in wanted:
        counts: Counter[str] = Counter()
        for column in (*ATTRIBUTE_SLOTS, MORE_ATTRIBUTES):
            for b in _buckets(raw, column):
                counts[str(b["key"])] += int(b["doc_count"])
        facets["attributes"] = _attribute_facet(counts)
    return facets


def _category_facet(buckets: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Counts per own category rolled up to every ancestor (each product has one category, so
    the sums are exact)."""
    nodes: dict[str, dict[str, Any]] = {}
    for b in buckets:
        path, *names = str(b["key"]).split(SEP)
        slugs = path.split("/")
        for depth in range(len(slugs)):
            node_path = "/".join(slugs[: depth + 1])
            node = nodes.setdefault(
                node_path,
                {
                    "value": slugs[depth],
                    "label": names[depth] if depth < len(names) else slugs[depth],
                    "path": node_path,
                    "depth": depth,
                    "count": 0,
                },
            )
            node["count"] += int(b["doc_count"])
    return sorted(nodes.values(), key=lambda n: n["path"])


def _attribute_facet(counts: Mapping[str, int]) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for key, count in counts.items():
        name, _, value = key.partition(SEP)
        by_name.setdefault(name, []).append({"value": value, "count": count})
    top = sorted(by_name, key=lambda n: (-sum(v["count"] for v in by_name[n]), n))
    return {
        name: sorted(by_name[name], key=lambda v: (-v["count"], v["value"]))
        for name in top[:ATTRIBUTE_FACETS]
    }


# --------------------------------------------------------------------------------------------
# Hits


def char_ranges(fragment: str, ranges: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Tantivy's highlight ranges are byte offsets; shoppers' screens count characters."""
    if fragment.isascii():
        return [[start, end] for start, end in ranges]
    raw = fragment.encode()

    def chars(offset: int) -> int:
        return len(raw[:offset].decode(errors="ignore"))

    return [[chars(start), chars(end)] for start, end in ranges]


@functools.lru_cache(maxsize=65_536)
def _money(minor: int, currency: str) -> str:
    return format_minor(minor, currency)


def _plain_snippet(text: str, length: int = 160) -> str:
    if len(text) <= length:
        return text
    cut = text[:length].rsplit(" ", 1)[0]
    return cut + "…"


def present_hits(
    searcher: tantivy.Searcher, plan: Plan, page: Page, snippets: bool
) -> list[dict[str, Any]]:
    generator = None
    if snippets and plan.text is not None and page.docs:
        generator = tantivy.SnippetGenerator.create(searcher, plan.text, SCHEMA, MATCH_FIELD)
        generator.set_max_num_chars(160)
    hits = []
    for doc in page.docs:
        currency = _first(doc, "currency")
        brand = _first(doc, "brand")
        category = _first(doc, "category", "")
        path, *names = category.split(SEP)
        rating = float(_first(doc, "rating", 0.0))
        description = _first(doc, MATCH_FIELD, "")
        snippet, highlights = _plain_snippet(description), []
        if generator is not None:
            found = generator.snippet_from_doc(doc)
            ranges = [(r.start, r.end) for r in found.highlighted()]
            if ranges:
                snippet = found.fragment()
                # The text is the description, then the category, attribute, title and brand
                # words: end the fragment with the description when a match lies in it.
                cut = len(description.encode()) - found.fragment_range().start
                raw = snippet.encode()
                inside = [(start, end) for start, end in ranges if end <= cut]
                if 0 < cut < len(raw) and inside:
                    snippet, ranges = raw[:cut].decode(errors="ignore"), inside
                highlights = char_ranges(snippet, ranges)
        in_stock = (
            plan.reach.holds(_first(doc, STOCK_SET))
            if plan.reach is not None
            else bool(_first(doc, "in_stock", 0))
        )
        hits.append(
            {
                "id": _first(doc, "id"),
                "title": _first(doc, "title", ""),
                "brand": (
                    {"slug": brand.split(SEP, 1)[0], "name": brand.split(SEP, 1)[-1]}
                    if brand
                    else None
                ),
                "category": {
                    "slug": path.rsplit("/", 1)[-1],
                    "name": names[-1] if names else "",
                    "path": path,
                },
                "min_price": _money(int(_first(doc, "price_min", 0)), currency),
                "max_price": _money(int(_first(doc, "price_max", 0)), currency),
                "currency": currency,
                "rating": round(rating, 2) if rating > 0 else None,
                "rating_count": int(_first(doc, "rating_count", 0)),
                "in_stock": in_stock,
                # Stock exists, but only in warehouses that do not ship to the destination.
                "available_elsewhere": plan.reach is not None
                and not in_stock
                and bool(_first(doc, STOCK_SET)),
                "image": _first(doc, "image"),
                "snippet": snippet,
                "highlights": highlights,
            }
        )
    return hits


# --------------------------------------------------------------------------------------------
# Autocomplete


def _group_suggestions(
    searcher: tantivy.Searcher, kind: str, words: Sequence[str]
) -> list[dict[str, Any]]:
    """Brands ("b") or categories ("c") with a word starting with the last typed word and
    containing the others; counts are products (approximate until segments merge)."""
    *head, last = words
    found: dict[str, dict[str, Any]] = {}
    for term, count in searcher.terms_with_prefix("suggest", f"{kind}{SEP}{last}", limit=200):
        parts = term.split(SEP)
        if len(parts) != 4:
            continue
        _, _, slug, name = parts
        name_words = set(PLAIN_ANALYZER.analyze(name))
        if not all(h in name_words for h in head):
            continue
        entry = found.setdefault(slug, {"value": slug, "label": name, "count": 0})
        entry["count"] = max(entry["count"], int(count))
    return sorted(found.values(), key=lambda e: (-e["count"], e["label"]))[:SUGGEST_GROUPS]


def suggest(reader: Reader, q: str) -> dict[str, list[dict[str, Any]]]:
    searcher = reader.searcher()
    words = PLAIN_ANALYZER.analyze(q)[:MAX_WORDS]
    if not words:
        return {"products": [], "brands": [], "categories": []}
    *head, last = words
    clauses = [(Occur.Must, _term("title_plain", h)) for h in head]
    clauses.append((Occur.Must, Query.phrase_prefix_query(SCHEMA, "title_plain", [last])))
    found = searcher.search(
        Query.boolean_query(clauses),
        SUGGEST_PRODUCTS,
        count=False,
        order_by_field="key_sales",
        order=Order.Desc,
    )
    products = []
    for _, address in found.hits:
        doc = searcher.doc(address)
        brand = _first(doc, "brand")
        products.append(
            {
                "id": _first(doc, "id"),
                "title": _first(doc, "title", ""),
                "brand": brand.split(SEP, 1)[-1] if brand else None,
                "image": _first(doc, "image"),
            }
        )
    return {
        "products": products,
        "brands": _group_suggestions(searcher, "b", words),
        "categories": _group_suggestions(searcher, "c", words),
    }
