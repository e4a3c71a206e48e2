"""The arithmetic checked by hand on tiny inputs: rule measures (as R's arules defines them),
item similarities, the hold-out split, the evaluation's measures, and a basket file's bad
input counted instead of crashing."""

from __future__ import annotations

import math

import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from mercato.recommendations import evaluation, rules, similarity
from mercato.recommendations.evaluation import Case, PastOrder
from mercato.recommendations.recent import Recent

BASKETS = [
    frozenset("ab"),
    frozenset("abc"),
    frozenset("ac"),
    frozenset("b"),
    frozenset("a"),
]  # N = 5; a in 4, b in 3, c in 2; ab in 2, ac in 2, bc in 1


def test_rule_measures_on_five_baskets() -> None:
    found = {
        (r.antecedent, r.consequent): r
        for r in rules.pair_rules(BASKETS, min_support=0.0001, min_confidence=0)
    }
    ab, ba, ca, bc = found["a", "b"], found["b", "a"], found["c", "a"], found["b", "c"]
    assert (ab.count, ab.support, ab.confidence) == (2, 0.4, 0.5)
    assert ab.lift == pytest.approx(0.5 / 0.6)  # confidence / support(b)
    assert ba.confidence == pytest.approx(2 / 3)
    assert ba.lift == pytest.approx((2 / 3) / 0.8)
    assert (ca.confidence, ca.lift) == (1.0, pytest.approx(1.25))
    assert (bc.support, bc.confidence) == (0.2, pytest.approx(1 / 3))
    assert len(found) == 6


def test_minimum_support_and_confidence_keep_only_strong_rules() -> None:
    # support >= 0.3 needs 2 of 5 baskets (ab, ac); confidence >= 0.6 keeps b->a and c->a.
    found = rules.pair_rules(BASKETS, min_support=0.3, min_confidence=0.6)
    assert [(r.antecedent, r.consequent) for r in found] == [("c", "a"), ("b", "a")]
    assert rules.pair_rules([], min_support=0.1, min_confidence=0.1) == []


@given(st.lists(st.frozensets(st.sampled_from("abcde"), min_size=1), min_size=1, max_size=30))
def test_rules_agree_with_counting_every_basket(baskets: list[frozenset[str]]) -> None:
    n = len(baskets)
    for r in rules.pair_rules(baskets, min_support=1e-9, min_confidence=0):
        both = sum(1 for b in baskets if {r.antecedent, r.consequent} <= b)
        x = sum(1 for b in baskets if r.antecedent in b)
        y = sum(1 for b in baskets if r.consequent in b)
        assert r.count == both and r.support == pytest.approx(both / n)
        assert r.confidence == pytest.approx(both / x)
        assert r.lift == pytest.approx(both * n / (x * y))


# u1 bought a, b; u2 a, b, c; u3 c.
X = sp.csr_matrix([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])


def test_itemknn_cosine_with_shrinkage() -> None:
    plain = similarity.itemknn(X, shrink=0).toarray()
    assert plain[0, 1] == pytest.approx(1.0)  # the same two buyers
    assert plain[0, 2] == pytest.approx(0.5)  # one shared buyer of two each
    assert plain[0, 0] == 0  # never itself
    shrunk = similarity.itemknn(X, shrink=1).toarray()
    assert shrunk[0, 1] == pytest.approx(2 / 3) and shrunk[0, 2] == pytest.approx(1 / 3)


def test_rp3beta_walks_item_customer_item() -> None:
    walk = similarity.rp3beta(X, alpha=1.0, beta=0.0).toarray()
    # a -> u1 (1/2) -> b (1/2), plus a -> u2 (1/2) -> b (1/3)
    assert walk[0, 1] == pytest.approx(1 / 4 + 1 / 6)
    assert walk[0, 2] == pytest.approx(1 / 6)
    assert walk[2, 0] == pytest.approx(1 / 6)
    assert walk[1, 1] == 0
    damped = similarity.rp3beta(X, alpha=1.0, beta=1.0).toarray()
    assert damped[0, 2] == pytest.approx(1 / 6 / 2)  # c was bought by two customers


def test_ease_has_no_self_weight_and_ranks_the_co_bought_first() -> None:
    b = similarity.ease(X, l2=1.0)
    assert all(b[i, i] == 0 for i in range(3))
    assert b[0, 1] > b[0, 2]


def test_top_neighbours_are_the_best_others() -> None:
    near = similarity.top_neighbours(similarity.itemknn(X, shrink=0), ("a", "b", "c"), 1)
    assert near == {
        "a": [("b", pytest.approx(1.0))],
        "b": [("a", pytest.approx(1.0))],
        "c": [("a", pytest.approx(0.5))],
    }


def test_the_last_order_is_held_out_and_only_new_products_count() -> None:
    orders = [
        PastOrder("c1", 1, frozenset("ab")),
        PastOrder("c1", 2, frozenset("bc")),
        PastOrder("c2", 1, frozenset("a")),  # one order: nothing to guess
        PastOrder("c3", 1, frozenset("a")),
        PastOrder("c3", 2, frozenset("a")),  # only a repeat
    ]
    split = evaluation.hold_out_last_orders(orders)
    assert split.cases == [Case(frozenset("ab"), frozenset("c"))]
    assert split.skipped == 2
    assert sorted(o.items for o in split.train if o.customer == "c1") == [frozenset("ab")]


def test_measures_by_hand() -> None:
    cases = [
        Case(frozenset(), frozenset("x")),
        Case(frozenset(), frozenset("yz")),
        Case(frozenset(), frozenset("w")),
    ]
    ranked = [["x"], ["a", "y", "b", "z"], ["a", "b"]]
    s = evaluation.measure(ranked, cases, catalog_size=10)
    second = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert s.hit_rate == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.ndcg == pytest.approx((1 + second) / 3)
    assert s.coverage == pytest.approx(0.5)  # x, a, y, b, z of 10


def test_every_recommender_beats_chance_on_a_structured_toy_shop() -> None:
    # Everyone who buys a kettle buys tea next; popularity pushes the mugs.
    orders = [PastOrder(f"m{i}", 1, frozenset({"mug"})) for i in range(10)]
    for i in range(6):
        orders += [
            PastOrder(f"c{i}", 1, frozenset({"kettle"})),
            PastOrder(f"c{i}", 2, frozenset({"tea"})),
        ]
    orders.append(PastOrder("t", 1, frozenset({"kettle", "tea"})))
    report = evaluation.evaluate(
        evaluation.hold_out_last_orders(orders), evaluation.RuleSettings(0.01, 0.01)
    )
    assert report.cases == 6
    assert report.by_recommender["popular"].hit_rate == 1.0  # only 3 products: all fit in 10
    assert set(report.by_recommender) == {
        "popular",
        "bought_together",
        "itemknn",
        "rp3beta",
        "ease",
    }
    for scores in report.by_recommender.values():
        assert scores.hit_rate == 1.0
        assert scores.ndcg <= 1.0


def test_bad_basket_lines_are_counted_never_fatal() -> None:
    data = b"bread,milk\n\n  \nmilk,milk,eggs\nbr\xffead,milk\nbeer,,chips\r\n,\n"
    found = evaluation.parse_baskets(data)
    assert found.baskets == [
        frozenset({"bread", "milk"}),
        frozenset({"milk", "eggs"}),
        frozenset({"beer", "chips"}),
    ]
    assert found.skipped == {"empty_line": 3, "duplicate_item": 1, "not_utf8": 1, "empty_item": 3}


def test_basket_files_hold_out_every_tenth_basket() -> None:
    baskets = [frozenset({f"p{i}", f"q{i}"}) for i in range(20)]
    baskets[19] = frozenset({"single"})
    split = evaluation.hold_out_baskets(baskets)
    assert split.cases == [Case(frozenset({"p9"}), frozenset({"q9"}))]
    assert split.skipped == 1 and len(split.train) == 19


async def test_recent_reads_load_only_what_they_do_not_hold() -> None:
    loads: list[list[str]] = []

    async def load(keys: list[str]) -> dict[str, int]:
        loads.append(sorted(keys))
        return {k: len(k) for k in keys if k != "gone"}

    kept = Recent[str, int](ttl=3600)
    assert await kept.read(["a", "bb", "gone"], load) == {"a": 1, "bb": 2}
    assert await kept.read(["a", "gone", "ccc"], load) == {"a": 1, "ccc": 3}
    assert loads == [["a", "bb", "gone"], ["ccc"]]  # "gone" is known to be gone, too
    uncached = Recent[str, int](ttl=0)
    await uncached.read(["a"], load)
    await uncached.read(["a"], load)
    assert loads[-2:] == [["a"], ["a"]]


@given(
    st.lists(st.tuples(st.integers(0, 7), st.integers(0, 9)), min_size=1, max_size=60, unique=True),
    st.integers(1, 4),
    st.sampled_from(["itemknn", "rp3beta"]),
)
def test_banded_top_lists_are_the_whole_matrix_top_lists(
    bought: list[tuple[int, int]], top: int, model: str
) -> None:
    # Customers x products; a budget of one entry puts every row in a band of its own.
    x = sp.csr_matrix(
        ([1.0] * len(bought), ([c for c, _ in bought], [p for _, p in bought])), shape=(8, 10)
    )
    items = [f"p{i}" for i in range(10)]
    whole = similarity.top_neighbours(similarity.scores(model, x), items, top)
    banded = similarity.top_of_rows(similarity.model_rows(model, x), items, top, budget=1)
    found = {
        items[i]: [
            (items[t], s)
            for t, s in zip(
                banded.targets[banded.indptr[i] : banded.indptr[i + 1]].tolist(),
                banded.scores[banded.indptr[i] : banded.indptr[i + 1]].tolist(),
                strict=True,
            )
        ]
        for i in range(10)
        if banded.indptr[i] < banded.indptr[i + 1]
    }
    assert found == whole
