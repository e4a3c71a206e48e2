"""Frequently bought together: association rules over order baskets, counted exactly.

A basket is the set of products of one order. For products X and Y, over N baskets (the
measures of R's ``arules``)::

    support(X -> Y)    = baskets holding both / N
    confidence(X -> Y) = baskets holding both / baskets holding X
    lift(X -> Y)       = confidence(X -> Y) / (baskets holding Y / N)

Only pairs (1 -> 1 rules) are mined: "bought together" shows one product next to another. A
product below the minimum support cannot be in a pair above it (Apriori's pruning), so pairs
are only counted among frequent products, which keeps the count exact and small.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Rule:
    antecedent: str
    consequent: str
    count: int  # baskets holding both
    support: float
    confidence: float
    lift: float


def frequent_items(baskets: Sequence[Collection[str]], min_count: int) -> Counter[str]:
    counts: Counter[str] = Counter()
    for basket in baskets:
        counts.update(set(basket))
    return Counter({item: n for item, n in counts.items() if n >= min_count})


def _min_count(min_support: float, baskets: int) -> int:
    # arules keeps an itemset when support >= minsupp, i.e. count >= minsupp * N.
    needed = min_support * baskets
    whole = int(needed)
    return max(1, whole if whole == needed else whole + 1)


def pair_counts(
    baskets: Iterable[Collection[str]], frequent: Collection[str]
) -> Counter[tuple[str, str]]:
    pairs: Counter[tuple[str, str]] = Counter()
    for basket in baskets:
        kept = sorted(item for item in set(basket) if item in frequent)
        pairs.update(itertools.combinations(kept, 2))
    return pairs


def pair_rules(
    baskets: Sequence[Collection[str]], *, min_support: float, min_confidence: float
) -> list[Rule]:
    """Every 1 -> 1 rule with support >= ``min_support`` and confidence >= ``min_confidence``,
    strongest first (lift, then confidence, then support, then the names)."""
    total = len(baskets)
    if total == 0:
        return []
    min_count = _min_count(min_support, total)
    items = frequent_items(baskets, min_count)
    found = []
    for (a, b), both in pair_counts(baskets, items).items():
        if both < min_count:
            continue
        for x, y in ((a, b), (b, a)):
            confidence = both / items[x]
            if confidence < min_confidence:
                continue
            found.append(
                Rule(x, y, both, both / total, confidence, confidence / (items[y] / total))
            )
    found.sort(key=lambda r: (-r.lift, -r.confidence, -r.support, r.antecedent, r.consequent))
    return found


def rules_by_product(rules: Iterable[Rule], top: int) -> dict[str, list[Rule]]:
    """For each antecedent, its ``top`` rules by lift (then confidence): what its page shows."""
    by: dict[str, list[Rule]] = {}
    for rule in rules:
        by.setdefault(rule.antecedent, []).append(rule)
    for found in by.values():
        found.sort(key=lambda r: (-r.lift, -r.confidence, r.consequent))
        del found[top:]
    return by
