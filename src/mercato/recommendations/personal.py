"""Recommended for you: the product lists of what a shopper bought, saved and looked at,
blended into one ranking.

Each seed product brings its own precomputed lists: "also bought" (similar products) for every
seed, and "bought together" (the rules) for what the shopper bought, whose complements are what
they may miss. Lists are on different scales (similarity scores, rule confidences), so they are
blended by rank, not by score: a candidate at rank ``r`` (from 0) of a seed's list earns
``weight / (r + RANK_DAMPING)`` (reciprocal rank fusion, Cormack et al. 2009), summed over the
seeds. A seed's weight says how much it tells about the shopper: a purchase most, a saved product
a little less, a product only looked at least, and each fades with its place in its own history
(most recent first), so the latest interests lead.

What the shopper already bought or saved is never suggested back, nor the seeds themselves;
each suggestion carries its reason (``similar``, or ``rule`` with the rule's measures) and the
seed it came from. A shopper with no seeds, or too few suggestions after filtering, gets the best
sellers (``popular``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mercato.recommendations.store import Item, Lists

RANK_DAMPING = 10.0
WEIGHT_BOUGHT = 1.0
WEIGHT_SAVED = 0.8
WEIGHT_VIEWED = 0.5
FADE = 0.85  # each older seed of a kind counts this much of the one after it
MAX_SEEDS = 20  # per kind: older history adds little and costs a list read each


@dataclass(frozen=True, slots=True)
class Seeds:
    """What a shopper left behind, each most recent first."""

    bought: Sequence[str] = ()
    saved: Sequence[str] = ()
    viewed: Sequence[str] = ()

    def __bool__(self) -> bool:
        return bool(self.bought or self.saved or self.viewed)

    def owned(self) -> set[str]:
        """What is never suggested back: bought, saved, and the seeds themselves."""
        return {*self.bought, *self.saved, *self.viewed}

    def weighted(self) -> Iterator[tuple[str, float, bool]]:
        """(product, weight, bought) for each seed, the most telling first."""
        for products, weight, bought in (
            (self.bought, WEIGHT_BOUGHT, True),
            (self.saved, WEIGHT_SAVED, False),
            (self.viewed, WEIGHT_VIEWED, False),
        ):
            for n, product in enumerate(products[:MAX_SEEDS]):
                yield product, weight * FADE**n, bought


@dataclass(frozen=True, slots=True)
class Candidate:
    item: Item
    reason: str  # "rule" | "similar"
    because: str  # the seed that contributed most
    score: float


def blend(lists: Lists, seeds: Seeds) -> list[Candidate]:
    """The seeds' lists fused by rank, best first (ties by product id, so the order is
    stable); what the shopper owns or saved and the seeds are left out."""
    owned = seeds.owned()
    score: dict[str, float] = {}
    best: dict[str, tuple[float, Item, str, str]] = {}  # product -> its strongest contribution
    for seed, weight, bought in seeds.weighted():
        sources = [(lists.of("also_bought", seed), "similar")]
        if bought:
            sources.append((lists.of("bought_together", seed), "rule"))
        for items, reason in sources:
            for rank, item in enumerate(items):
                product = item.product_id
                if product in owned:
                    continue
                gain = weight / (rank + RANK_DAMPING)
                score[product] = score.get(product, 0.0) + gain
                if product not in best or gain > best[product][0]:
                    best[product] = (gain, item, reason, seed)
    ranked = sorted(score, key=lambda p: (-score[p], p))
    return [Candidate(best[p][1], best[p][2], best[p][3], score[p]) for p in ranked]
