"""Offline evaluation a shop owner can run: how well each recommender would have guessed what
customers bought next, against simply showing the best sellers.

**Shop orders**: each customer's last order is held out; every recommender is trained on
everything else. For each customer, the recommender ranks the products they have not bought
yet from their earlier purchases; the *target* is the held-out order's products they had not
bought before (a customer whose last order only repeats earlier purchases, or who has one
order, has nothing to guess and is counted as skipped). Lists short of 10 are filled from
popularity, as the shop's pages are.

**A basket file** (no customers): every tenth basket is held out; its last item is the target
and the others are what the recommender starts from; the other baskets train it.

Measures at k = 10, averaged over the evaluated cases:

* hit-rate@k: 1 when some target is in the top k;
* recall@k: targets in the top k / targets;
* NDCG@k: ``sum(1 / log2(rank + 1))`` over the targets in the top k (ranks from 1), divided by
  the same for a perfect list (``min(targets, k)`` hits at the top);
* coverage: distinct products recommended to anyone / products in the training data.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from mercato.recommendations import rules as rule_mining
from mercato.recommendations import similarity

K = 10
HOLD_OUT_EVERY = 10  # basket files: every tenth basket is a test case
BATCH = 1000


@dataclass(frozen=True, slots=True)
class PastOrder:
    customer: str
    placed: Any  # anything that sorts: the moment, or the order's position in a file
    items: frozenset[str]


@dataclass(frozen=True, slots=True)
class Case:
    seeds: frozenset[str]  # what the recommender knows of this customer
    targets: frozenset[str]


@dataclass(frozen=True, slots=True)
class Split:
    train: list[PastOrder]
    cases: list[Case]
    skipped: int  # customers with nothing to guess


@dataclass(frozen=True, slots=True)
class Scores:
    hit_rate: float
    recall: float
    ndcg: float
    coverage: float


@dataclass(frozen=True, slots=True)
class Report:
    cases: int
    skipped: int
    items: int
    train_orders: int
    by_recommender: dict[str, Scores]
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BasketFile:
    baskets: list[frozenset[str]]
    skipped: Counter[str]  # empty_line, not_utf8, duplicate_item, empty_item


# --------------------------------------------------------------------------------------------
# Splitting


def hold_out_last_orders(orders: Sequence[PastOrder]) -> Split:
    by_customer: dict[str, list[PastOrder]] = {}
    for order in orders:
        by_customer.setdefault(order.customer, []).append(order)
    train: list[PastOrder] = []
    cases: list[Case] = []
    skipped = 0
    for customer in sorted(by_customer):
        history = sorted(by_customer[customer], key=lambda o: o.placed)
        *earlier, last = history
        train.extend(earlier)
        seeds = frozenset().union(*(o.items for o in earlier)) if earlier else frozenset()
        new = last.items - seeds
        if not earlier or not new:
            skipped += 1
            train.append(last)  # nothing to guess: it still teaches the others
            continue
        cases.append(Case(seeds, new))
    return Split(train, cases, skipped)


def hold_out_baskets(baskets: Sequence[frozenset[str]]) -> Split:
    train: list[PastOrder] = []
    cases: list[Case] = []
    skipped = 0
    for n, basket in enumerate(baskets):
        if n % HOLD_OUT_EVERY != HOLD_OUT_EVERY - 1:
            train.append(PastOrder(f"basket-{n}", n, basket))
            continue
        items = sorted(basket)
        if len(items) < 2:
            skipped += 1
            train.append(PastOrder(f"basket-{n}", n, basket))
            continue
        cases.append(Case(frozenset(items[:-1]), frozenset(items[-1:])))
    return Split(train, cases, skipped)


# --------------------------------------------------------------------------------------------
# Reading a basket file


def parse_baskets(data: bytes) -> BasketFile:
    """One basket per line, items separated by commas. Bad input is counted, never fatal: an
    empty line, a line that is not UTF-8 (skipped whole), an item repeated in its basket (kept
    once), an empty item between two commas."""
    skipped: Counter[str] = Counter()
    baskets: list[frozenset[str]] = []
    for raw in data.splitlines():
        try:
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            skipped["not_utf8"] += 1
            continue
        if not line:
            skipped["empty_line"] += 1
            continue
        seen: set[str] = set()
        for item in (part.strip() for part in line.split(",")):
            if not item:
                skipped["empty_item"] += 1
            elif item in seen:
                skipped["duplicate_item"] += 1
            else:
                seen.add(item)
        if seen:
            baskets.append(frozenset(seen))
        else:
            skipped["empty_line"] += 1
    return BasketFile(baskets, skipped)


def read_baskets(path: Path) -> BasketFile:
    return parse_baskets(path.read_bytes())


# --------------------------------------------------------------------------------------------
# The recommenders, trained on the training orders; each scores every product for a customer

Scorer = Callable[[Any], Any]  # (seed rows: csr users x items) -> dense scores users x items


def _popularity(x: Any) -> Any:
    return np.asarray(x.sum(axis=0)).ravel()


def _rules_matrix(train: Sequence[PastOrder], items: Sequence[str], settings: RuleSettings) -> Any:
    index = {p: i for i, p in enumerate(items)}
    found = rule_mining.pair_rules(
        [o.items for o in train],
        min_support=settings.min_support,
        min_confidence=settings.min_confidence,
    )
    rows = [index[r.antecedent] for r in found]
    cols = [index[r.consequent] for r in found]
    data = [r.confidence for r in found]
    return sp.csr_matrix((data, (rows, cols)), shape=(len(items), len(items)))


@dataclass(frozen=True, slots=True)
class RuleSettings:
    min_support: float
    min_confidence: float


def recommenders(
    train: Sequence[PastOrder],
    items: Sequence[str],
    x: Any,
    rule_settings: RuleSettings,
    models: Sequence[str],
) -> dict[str, Any]:
    """Name -> item x item weights (the popularity baseline is handled apart)."""
    found: dict[str, Any] = {"bought_together": _rules_matrix(train, items, rule_settings)}
    for model in models:
        if model == "ease" and len(items) > similarity.EASE_MAX_ITEMS:
            continue
        found[model] = similarity.scores(model, x)
    return found


# --------------------------------------------------------------------------------------------
# Measuring


def _dcg(ranks: Sequence[int]) -> float:
    return sum(1.0 / math.log2(r + 1) for r in ranks)


def measure(ranked: Sequence[Sequence[str]], cases: Sequence[Case], catalog_size: int) -> Scores:
    """The four measures of the top-K lists ``ranked`` (one per case)."""
    if not cases:
        return Scores(0.0, 0.0, 0.0, 0.0)
    hits = recall = ndcg = 0.0
    shown: set[str] = set()
    for top, case in zip(ranked, cases, strict=True):
        top = list(top)[:K]
        shown.update(top)
        ranks = [n for n, item in enumerate(top, start=1) if item in case.targets]
        hits += 1.0 if ranks else 0.0
        recall += len(ranks) / len(case.targets)
        ndcg += _dcg(ranks) / _dcg(range(1, min(len(case.targets), K) + 1))
    n = len(cases)
    coverage = len(shown) / catalog_size if catalog_size else 0.0
    return Scores(hits / n, recall / n, ndcg / n, coverage)


def _top_k(scores: Any, seeds: Any, popularity: Any, items: Sequence[str]) -> list[list[str]]:
    """Per row: the K best-scored products not among the seeds, filled up by popularity."""
    by_popularity = np.argsort(-popularity, kind="stable")
    lists = []
    for row in range(seeds.shape[0]):
        owned = set(seeds.indices[seeds.indptr[row] : seeds.indptr[row + 1]].tolist())
        picked: list[int] = []
        if scores is not None:
            s = np.asarray(scores[row]).ravel()
            order = np.argsort(-s, kind="stable")[: K + len(owned)]
            picked = [int(i) for i in order if s[i] > 0 and int(i) not in owned][:K]
        for i in by_popularity:
            if len(picked) >= K:
                break
            if int(i) not in owned and int(i) not in picked:
                picked.append(int(i))
        lists.append([items[i] for i in picked])
    return lists


def _seed_matrix(cases: Sequence[Case], index: Mapping[str, int], n_items: int) -> Any:
    rows, cols = [], []
    for r, case in enumerate(cases):
        for item in case.seeds:
            if item in index:
                rows.append(r)
                cols.append(index[item])
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(cases), n_items))


def evaluate(
    split: Split,
    rule_settings: RuleSettings,
    models: Sequence[str] = similarity.MODELS,
    timer: Callable[[], float] | None = None,
) -> Report:
    train = split.train
    x_data = interactions_of(train)
    items = x_data.items
    index = {p: i for i, p in enumerate(items)}
    popularity = _popularity(x_data.matrix)
    seeds = _seed_matrix(split.cases, index, len(items))
    by: dict[str, Scores] = {}
    seconds: dict[str, float] = {}
    popular = _top_k(None, seeds, popularity, items)
    by["popular"] = measure(popular, split.cases, len(items))
    for name, weights in recommenders(train, items, x_data.matrix, rule_settings, models).items():
        started = timer() if timer else 0.0
        ranked: list[list[str]] = []
        for start in range(0, len(split.cases), BATCH):
            part = seeds[start : start + BATCH]
            scored = part @ weights
            scored = scored.toarray() if sp.issparse(scored) else np.asarray(scored)
            ranked.extend(_top_k(scored, part, popularity, items))
        by[name] = measure(ranked, split.cases, len(items))
        if timer:
            seconds[name] = timer() - started
    return Report(len(split.cases), split.skipped, len(items), len(train), by, seconds)


def interactions_of(train: Sequence[PastOrder]) -> similarity.Interactions:
    return similarity.Interactions.of((o.customer, item) for o in train for item in o.items)
