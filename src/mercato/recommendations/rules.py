"""Frequently bought together: association rules over order baskets, counted exactly.

A basket is the set of products of one order. For products X and Y, over N baskets (the
measures of R's ``arules``)::

    support(X -> Y)    = baskets holding both / N
    confidence(X -> Y) = baskets holding both / baskets holding X
    lift(X -> Y)       = confidence(X -> Y) / (baskets holding Y / N)

Only pairs (1 -> 1 rules) are mined: "bought together" shows one product next to another. A
product below the minimum support cannot be in a pair above it (Apriori's pruning), so pairs
are only counted among frequent products, which keeps the count exact and small. The counting
is a sparse matrix product (baskets as a 0/1 matrix), so a million orders take seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

Array = Any  # numpy.ndarray


@dataclass(frozen=True, slots=True)
class Rule:
    antecedent: str
    consequent: str
    count: int  # baskets holding both
    support: float
    confidence: float
    lift: float


@dataclass(frozen=True, slots=True)
class Baskets:
    """Baskets as a sparse 0/1 matrix (baskets x products), the products sorted by name: the
    counting is then sparse matrix arithmetic instead of a Python loop per basket."""

    matrix: Any  # scipy.sparse.csr_matrix of int32
    items: tuple[str, ...]

    @classmethod
    def of(cls, baskets: Sequence[Collection[str]]) -> Baskets:
        items = tuple(sorted({item for basket in baskets for item in basket}))
        column = {item: i for i, item in enumerate(items)}
        sizes = np.fromiter((len(b) for b in baskets), dtype=np.int64, count=len(baskets))
        indptr = np.zeros(len(baskets) + 1, dtype=np.int64)
        np.cumsum(sizes, out=indptr[1:])
        cols = np.fromiter(
            (column[item] for b in baskets for item in b), dtype=np.int32, count=int(indptr[-1])
        )
        matrix = sp.csr_matrix(
            (np.ones(len(cols), dtype=np.int32), cols, indptr), shape=(len(baskets), len(items))
        )
        matrix.sum_duplicates()  # an item listed twice in a basket counts once
        matrix.data[:] = 1
        return cls(matrix, items)

    def counts(self) -> Array:
        """Baskets holding each product."""
        return np.asarray(self.matrix.sum(axis=0), dtype=np.int64).ravel()


@dataclass(frozen=True, slots=True)
class RuleArrays:
    """Rules as parallel arrays (product indexes into :attr:`Baskets.items`)."""

    antecedent: Array
    consequent: Array
    count: Array
    support: Array
    confidence: Array
    lift: Array

    def __len__(self) -> int:
        return len(self.antecedent)

    def taken(self, order: Array) -> RuleArrays:
        return RuleArrays(
            self.antecedent[order],
            self.consequent[order],
            self.count[order],
            self.support[order],
            self.confidence[order],
            self.lift[order],
        )


def _min_count(min_support: float, baskets: int) -> int:
    # arules keeps an itemset when support >= minsupp, i.e. count >= minsupp * N.
    needed = min_support * baskets
    whole = int(needed)
    return max(1, whole if whole == needed else whole + 1)


def rule_arrays(baskets: Baskets, *, min_support: float, min_confidence: float) -> RuleArrays:
    """Every 1 -> 1 rule over the baskets, unordered. Pairs are counted as ``FᵀF`` over the
    columns of the frequent products only (Apriori's pruning: a product below the minimum
    support is in no pair above it), so the work is the frequent products' co-occurrences."""
    total = baskets.matrix.shape[0]
    empty = np.zeros(0, dtype=np.int64)
    if total == 0:
        return RuleArrays(empty, empty, empty, *(np.zeros(0),) * 3)
    min_count = _min_count(min_support, total)
    counts = baskets.counts()
    frequent = np.flatnonzero(counts >= min_count)
    f = baskets.matrix.tocsc()[:, frequent]
    pairs = (f.T.tocsr() @ f).tocoo()
    keep = (pairs.row != pairs.col) & (pairs.data >= min_count)
    x = frequent[pairs.row[keep]]
    y = frequent[pairs.col[keep]]
    both = pairs.data[keep].astype(np.int64)
    # The same float operations, in the same order, as the measures' definitions.
    confidence = both / counts[x]
    strong = confidence >= min_confidence
    x, y, both, confidence = x[strong], y[strong], both[strong], confidence[strong]
    return RuleArrays(x, y, both, both / total, confidence, confidence / (counts[y] / total))


def pair_rules(
    baskets: Sequence[Collection[str]], *, min_support: float, min_confidence: float
) -> list[Rule]:
    """Every 1 -> 1 rule with support >= ``min_support`` and confidence >= ``min_confidence``,
    strongest first (lift, then confidence, then support, then the names)."""
    matrix = Baskets.of(baskets)
    found = rule_arrays(matrix, min_support=min_support, min_confidence=min_confidence)
    # The products are indexed in name order, so an index breaks ties as the name would.
    order = np.lexsort(
        (found.consequent, found.antecedent, -found.support, -found.confidence, -found.lift)
    )
    found = found.taken(order)
    names = matrix.items
    return [
        Rule(names[x], names[y], n, s, c, lift)
        for x, y, n, s, c, lift in zip(
            found.antecedent.tolist(),
            found.consequent.tolist(),
            found.count.tolist(),
            found.support.tolist(),
            found.confidence.tolist(),
            found.lift.tolist(),
            strict=True,
        )
    ]


def top_rules(found: RuleArrays, top: int) -> RuleArrays:
    """For each antecedent, its ``top`` rules by lift (then confidence, then the consequent):
    what its page shows; grouped by antecedent, best first."""
    order = np.lexsort((found.consequent, -found.confidence, -found.lift, found.antecedent))
    ranked = found.taken(order)
    return ranked.taken(_rank_in_group(ranked.antecedent) < top)


def _rank_in_group(groups: Array) -> Array:
    """For a sorted array of group keys, each element's position within its group."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))


def rules_by_product(rules: Iterable[Rule], top: int) -> dict[str, list[Rule]]:
    """For each antecedent, its ``top`` rules by lift (then confidence): what its page shows."""
    by: dict[str, list[Rule]] = {}
    for rule in rules:
        by.setdefault(rule.antecedent, []).append(rule)
    for found in by.values():
        found.sort(key=lambda r: (-r.lift, -r.confidence, r.consequent))
        del found[top:]
    return by
