"""Personalised ranking: a signed-in customer's brand and category affinities re-order the top
of a relevance-ranked answer, never what matches.

The affinities come from a reader a higher module registers in :data:`affinity_readers`
(``modules.wire``: the recommendations module's, from the customer's purchases and views);
search only knows their shape, :class:`Affinity`. Each customer's is kept
:data:`AFFINITY_TTL` seconds per process, so paging through an answer sees one ordering and a
warm search reads nothing from the database.

The re-rank (:func:`personal_order`) takes the first :data:`TOP_N` hits of the relevance
order, with their engine scores, and sorts them by

    score * (1 + W_BRAND * brand affinity + W_CATEGORY * category affinity)

(affinities in [0, 1]; ties keep the relevance order). Hits past :data:`TOP_N` keep the
relevance order, so pages computed on the re-ranked top N and then on the engine's order
beyond it neither repeat nor skip a product. Explicit sorts and browsing without words are
never re-ranked; the total and the facets are counted on the matching set, which the
affinities never touch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from mercato.db import UnitOfWork
from mercato.runtime import Runtime

log = logging.getLogger("mercato.search")

TOP_N = 50
"""How many of the best relevance hits a customer's affinities may re-order."""
W_BRAND = 0.25
W_CATEGORY = 0.15
"""At most +40% on a hit's score: enough to lift a customer's brand above about equally
relevant products, not enough to put a description match above a title match."""
AFFINITY_TTL = 120.0
MAX_CACHED = 50_000
EXTRAS_KEY = "search.affinities"


@dataclass(frozen=True, slots=True)
class Affinity:
    """How much a customer cares for each brand and category (by slug), each in (0, 1]: 1 for
    their favourite. A category's weight includes what the customer showed for its
    subcategories; a hit takes the best weight along its category path."""

    brands: Mapping[str, float] = field(default_factory=dict)
    categories: Mapping[str, float] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.brands or self.categories)

    def boost(self, brand: str | None, category_path: str) -> float:
        """The factor a hit's score is multiplied by (1: no preference known)."""
        b = self.brands.get(brand, 0.0) if brand else 0.0
        c = max((self.categories.get(s, 0.0) for s in category_path.split("/") if s), default=0.0)
        return 1.0 + W_BRAND * _unit(b) + W_CATEGORY * _unit(c)


NO_AFFINITY = Affinity()


def _unit(value: float) -> float:
    # A reader's weights are promised in (0, 1]; anything else is clamped rather than trusted.
    return min(max(value, 0.0), 1.0) if value == value else 0.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A hit of the relevance order as the re-rank sees it."""

    score: float
    brand: str | None  # slug
    category_path: str  # slugs from the root, "/"-separated


def personal_order(candidates: Sequence[Candidate], affinity: Affinity) -> list[int]:
    """The positions of ``candidates`` (the relevance order's top N) in the customer's order:
    a permutation, by boosted score, ties in the relevance order."""
    boosted = [c.score * affinity.boost(c.brand, c.category_path) for c in candidates]
    return sorted(range(len(candidates)), key=lambda i: (-boosted[i], i))


# --------------------------------------------------------------------------------------------
# Whose affinities

AffinityReader = Callable[[UnitOfWork, str], Awaitable[Affinity]]
affinity_readers: list[AffinityReader] = []
"""At most one reader (the first is used): the customer's affinities by user id."""


@dataclass(slots=True)
class _Cache:
    found: dict[str, tuple[float, Affinity]] = field(default_factory=dict)


def _cache(runtime: Runtime) -> _Cache:
    found = runtime.extras.get(EXTRAS_KEY)
    if not isinstance(found, _Cache):
        found = runtime.extras[EXTRAS_KEY] = _Cache()
    return found


async def customer_affinity(runtime: Runtime, user_id: str | None) -> Affinity:
    """The customer's affinities (none for a guest, or when no reader is registered), read in
    a short transaction of its own at most every :data:`AFFINITY_TTL` seconds. A failed read
    answers without personalisation rather than failing the search."""
    if user_id is None or not affinity_readers:
        return NO_AFFINITY
    cache = _cache(runtime)
    now = time.monotonic()
    hit = cache.found.get(user_id)
    if hit is not None and hit[0] > now:
        return hit[1]
    try:
        async with runtime.db.transaction() as uow:
            affinity = await affinity_readers[0](uow, user_id)
    except Exception:
        log.warning("affinities of %s could not be read; not personalising", user_id, exc_info=True)
        return NO_AFFINITY
    if len(cache.found) >= MAX_CACHED:
        cache.found.clear()
    cache.found[user_id] = (now + AFFINITY_TTL, affinity)
    return affinity


def forget_affinities(runtime: Runtime) -> None:
    """Drop this process's kept affinities (the next search of each customer reads them)."""
    _cache(runtime).found.clear()
