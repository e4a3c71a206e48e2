"""The demo history's plan has the structure recommendations learn from: each customer keeps to
a department and to the brand they first bought there, sets are bought together, and a
similarity model trained on the plan guesses customers' next products better than the best
sellers do. The plan is pure (no database), so this runs on a made-up catalog."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from mercato import demo_history
from mercato.recommendations import evaluation

pytestmark = pytest.mark.slow  # long: scheduled first (tests/conftest.py)

DEPARTMENTS = 10
PRODUCTS = 600


def _catalog() -> tuple[demo_history.Variants, dict[str, demo_history.Shelf]]:
    variants: demo_history.Variants = {}
    shelves: dict[str, demo_history.Shelf] = {}
    for n in range(PRODUCTS):
        product = f"p{n:04d}"  # in SKU order, a department's shelf after another's
        department = f"d{n * DEPARTMENTS // PRODUCTS}"
        variants[product] = [(f"v{n:04d}", frozenset({"DE", "FR", "NL", "BE", "AT"}))]
        shelves[product] = (f"b{n % 7}-{department}", f"c{n // 20}", department)
    return variants, shelves


def _plan(seed: int) -> tuple[list[demo_history._Order], dict[str, demo_history.Shelf]]:
    variants, shelves = _catalog()
    rng = random.Random(seed)
    people = [
        demo_history._Customer(
            email=f"c{i}@example.com",
            name="C",
            address={"country": rng.choice(["DE", "FR", "NL", "BE", "AT"])},
            joined_days_ago=100,
        )
        for i in range(150)
    ]
    plans = demo_history._plan(
        rng,
        customers=len(people),
        count=1500,
        variants=variants,
        people=people,
        now=datetime(2026, 12, 1, tzinfo=UTC),
        days=90,
        shelves=shelves,
    )
    return plans, shelves


def test_customers_keep_to_their_department() -> None:
    plans, shelves = _plan(7)
    by_customer: dict[int, Counter[str]] = {}
    for order in plans:
        for _variant, product, _units in order.lines:
            by_customer.setdefault(order.customer, Counter())[shelves[product][2]] += 1
    regulars = [c for c in by_customer.values() if c.total() >= 10]
    assert len(regulars) > 30
    share = sum(c.most_common(1)[0][1] / c.total() for c in regulars) / len(regulars)
    # Most picks in the customer's department; sets and repeat buys add a few from elsewhere.
    assert share > 0.75
    spread = Counter(c.most_common(1)[0][0] for c in regulars)
    assert len(spread) >= DEPARTMENTS // 2  # not everyone in the same department


def test_a_similarity_model_beats_the_best_sellers_on_the_plan() -> None:
    hits: dict[str, list[float]] = {}
    for seed in (1, 2, 3):
        plans, _ = _plan(seed)
        past = [
            evaluation.PastOrder(str(p.customer), p.placed, frozenset(x[1] for x in p.lines))
            for p in plans
        ]
        report = evaluation.evaluate(
            evaluation.hold_out_last_orders(past),
            evaluation.RuleSettings(min_support=0.001, min_confidence=0.05),
            models=("rp3beta",),
        )
        for name, scores in report.by_recommender.items():
            hits.setdefault(name, []).append(scores.hit_rate)
    mean = {name: sum(v) / len(v) for name, v in hits.items()}
    assert mean["rp3beta"] > 1.3 * mean["popular"], mean
