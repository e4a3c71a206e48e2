"""Customers who bought this also bought: item-to-item similarity over purchase histories.

The input is the binary matrix X (customers x products: 1 when the customer bought the product
at least once). Three models, the neighbourhood baselines the literature keeps finding hard to
beat (Dacrema et al., RecSys 2019):

* **ItemKNN cosine with shrinkage**: ``sim(i, j) = |U_i ∩ U_j| / (sqrt(|U_i|·|U_j|) + shrink)``;
  the shrink term damps pairs seen by few customers.
* **RP3beta** (Paudel et al. 2017): a random walk item -> customer -> item with transition
  probabilities raised to ``alpha``, each target divided by its popularity to the ``beta``, so
  best sellers do not crowd every list.
* **EASE** (Steck 2019): the closed-form linear autoencoder ``B = I - P / diag(P)`` with
  ``P = (XᵀX + λI)⁻¹``. The inverse is dense (products squared floats), so it is only offered for
  catalogs up to :data:`EASE_MAX_ITEMS` products; at a million products it would need terabytes.

Each model gives an item x item score matrix with a zero diagonal (a product never recommends
itself); :func:`top_neighbours` keeps each product's best ``top`` others. ItemKNN and RP3beta
are also computed a band of rows at a time (:func:`top_of_rows`), each band cut to its rows'
best at once, so a million products never need their whole score matrix in memory.

The defaults (shrink 50; alpha 0.5, beta 0; lambda 200) are the best of a small grid on the demo
history's hold-out (docs/benchmarks.md); a shop with much more data may tune them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

EASE_MAX_ITEMS = 5000
MODELS: tuple[str, ...] = ("itemknn", "rp3beta", "ease")


@dataclass(frozen=True, slots=True)
class Interactions:
    """X with the names of its rows (customers) and columns (products)."""

    matrix: Any  # scipy.sparse.csr_matrix of float64, 0/1
    customers: tuple[str, ...]
    items: tuple[str, ...]

    @classmethod
    def of(cls, histories: Iterable[tuple[str, str]], items: Sequence[str] = ()) -> Interactions:
        """From (customer, product) pairs; ``items`` fixes the column order (and may name
        products nobody bought), else products are ordered by name."""
        pairs = set(histories)
        names = list(items) or sorted({p for _, p in pairs})
        column = {p: i for i, p in enumerate(names)}
        customers = sorted({c for c, _ in pairs})
        row = {c: i for i, c in enumerate(customers)}
        kept = [(row[c], column[p]) for c, p in pairs if p in column]
        rows = np.fromiter((r for r, _ in kept), dtype=np.int64, count=len(kept))
        cols = np.fromiter((c for _, c in kept), dtype=np.int64, count=len(kept))
        matrix = sp.csr_matrix(
            (np.ones(len(kept)), (rows, cols)), shape=(len(customers), len(names))
        )
        return cls(matrix, tuple(customers), tuple(names))


def interactions_of_baskets(
    customers: Sequence[str], baskets: Any, items: Sequence[str]
) -> Interactions:
    """X from the baskets' 0/1 matrix (baskets x ``items``) and each basket's customer: a
    sparse product instead of a Python set of (customer, product) pairs."""
    names = sorted(set(customers))
    row = {c: i for i, c in enumerate(names)}
    owner = np.fromiter((row[c] for c in customers), dtype=np.int64, count=len(customers))
    of_customer = sp.csr_matrix(
        (np.ones(len(customers)), (owner, np.arange(len(customers)))),
        shape=(len(names), len(customers)),
    )
    matrix = sp.csr_matrix(of_customer @ sp.csr_matrix(baskets, dtype=np.float64))
    matrix.data[:] = 1.0
    return Interactions(matrix, tuple(names), tuple(items))


def _without_diagonal(scores: Any) -> Any:
    scores = sp.csr_matrix(scores)
    scores.setdiag(0)
    scores.eliminate_zeros()
    return scores


@dataclass(frozen=True, slots=True)
class RowScores:
    """A sparse item x item model computed a band of rows at a time: ``left[a:b] @ right``,
    then each model's arithmetic on the entries. A million products' full score matrix would
    not fit in memory; a band of rows, topped to each row's best, does."""

    left: Any  # items x customers, csr
    right: Any  # customers x items, csr
    finish: Callable[[Any, int], Any]  # (band's product, its first row) -> the band's scores

    @property
    def items(self) -> int:
        return int(self.right.shape[1])

    def rows(self, start: int, end: int) -> Any:
        return self.finish((self.left[start:end] @ self.right).tocsr(), start)

    def costs(self) -> Any:
        """An upper bound of each row's entries before merging: the products bought by its
        product's buyers, counted with repeats (the work of that row's product)."""
        reach = sp.csr_matrix(
            (np.ones(len(self.left.data)), self.left.indices, self.left.indptr),
            shape=self.left.shape,
        )
        return reach @ np.diff(self.right.indptr).astype(np.float64)


def itemknn_rows(x: Any, *, shrink: float = 50.0) -> RowScores:
    x = sp.csr_matrix(x, dtype=np.float64)
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())  # binary: ‖column‖ = sqrt(buyers)

    def finish(co: Any, start: int) -> Any:
        co = co.tocoo()
        data = co.data / (norms[co.row + start] * norms[co.col] + shrink)
        return sp.csr_matrix((data, (co.row, co.col)), shape=co.shape)

    return RowScores(x.T.tocsr(), x, finish)


def itemknn(x: Any, *, shrink: float = 50.0) -> Any:
    """Cosine similarity with shrinkage, sparse (items x items)."""
    model = itemknn_rows(x, shrink=shrink)
    return _without_diagonal(model.rows(0, model.items))


def _row_normalized(m: Any) -> Any:
    sums = np.asarray(m.sum(axis=1)).ravel()
    sums[sums == 0] = 1.0
    return sp.diags(1.0 / sums) @ m


def rp3beta_rows(x: Any, *, alpha: float = 0.5, beta: float = 0.0) -> RowScores:
    x = sp.csr_matrix(x, dtype=np.float64)
    p_ui = sp.csr_matrix(_row_normalized(x))
    p_iu = sp.csr_matrix(_row_normalized(x.T.tocsr()))
    if alpha != 1.0:
        p_ui.data **= alpha
        p_iu.data **= alpha
    popularity = np.asarray(x.sum(axis=0)).ravel()
    damp = np.zeros_like(popularity)
    bought = popularity > 0
    damp[bought] = popularity[bought] ** -beta

    def finish(walk: Any, _start: int) -> Any:
        walk.data *= damp[walk.indices]
        return walk

    return RowScores(p_iu, p_ui, finish)


def rp3beta(x: Any, *, alpha: float = 0.5, beta: float = 0.0) -> Any:
    """P(j | i) of the walk item -> customer -> item, divided by popularity(j) ** beta."""
    model = rp3beta_rows(x, alpha=alpha, beta=beta)
    return _without_diagonal(model.rows(0, model.items))


def ease(x: Any, *, l2: float = 200.0) -> Any:
    """The EASE weights B (dense, items x items, zero diagonal)."""
    n = x.shape[1]
    if n > EASE_MAX_ITEMS:
        raise ValueError(f"EASE needs a dense {n}×{n} inverse; use it up to {EASE_MAX_ITEMS}")
    x = sp.csr_matrix(x, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices(n)] += l2
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    b[np.diag_indices(n)] = 0.0
    return b


def scores(model: str, x: Any) -> Any:
    if model == "itemknn":
        return itemknn(x)
    if model == "rp3beta":
        return rp3beta(x)
    if model == "ease":
        return ease(x)
    raise ValueError(f"unknown model {model!r}; one of {', '.join(MODELS)}")


@dataclass(frozen=True, slots=True)
class Neighbours:
    """Each item's best others, CSR: item ``i``'s are ``targets[indptr[i]:indptr[i + 1]]``
    (item indexes) with their ``scores``, best first."""

    indptr: Any
    targets: Any
    scores: Any


BAND_ENTRIES = 8_000_000  # entries of one band's product before topping (~200 MB of work)


def _top_of_band(band: Any, start: int, top: int, name_rank: Any) -> tuple[Any, Any, Any]:
    """The band's rows cut to their ``top`` best positive others (ties by name): the kept
    count per row, and the kept columns and scores, row by row."""
    band = sp.csr_matrix(band)
    rows = np.repeat(np.arange(band.shape[0]), np.diff(band.indptr))
    keep = (band.data > 0) & (band.indices != rows + start)  # never itself
    rows, cols, vals = rows[keep], band.indices[keep], band.data[keep]
    # Only the entries at or above their row's top-th best value can be kept: those are
    # found by a partition per long row, and only they are sorted (the sort is the cost).
    candidate = vals >= _thresholds(rows, vals, band.shape[0], top)[rows]
    rows, cols, vals = rows[candidate], cols[candidate], vals[candidate]
    order = np.lexsort((name_rank[cols], -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.searchsorted(rows, np.arange(band.shape[0]))
    best = np.arange(len(rows)) - first[rows] < top
    counts = np.bincount(rows[best], minlength=band.shape[0])
    return counts, cols[best], vals[best]


def _thresholds(rows: Any, vals: Any, n: int, top: int) -> Any:
    """Each row's ``top``-th best value (-inf for a row with no more than ``top`` entries);
    ``rows`` is sorted."""
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=bounds[1:])
    found = np.full(n, -np.inf)
    for r in np.flatnonzero(np.diff(bounds) > top).tolist():
        v = vals[bounds[r] : bounds[r + 1]]
        found[r] = np.partition(v, len(v) - top)[len(v) - top]
    return found


def _bands(costs: Any, budget: int) -> list[tuple[int, int]]:
    """Consecutive row ranges whose summed cost stays within ``budget`` (a row alone may
    exceed it)."""
    bands: list[tuple[int, int]] = []
    start, total = 0, 0.0
    for i, cost in enumerate(costs.tolist()):
        if i > start and total + cost > budget:
            bands.append((start, i))
            start, total = i, 0.0
        total += cost
    if start < len(costs):
        bands.append((start, len(costs)))
    return bands


def _name_rank(items: Sequence[str]) -> Any:
    order = sorted(range(len(items)), key=items.__getitem__)
    rank = np.empty(len(items), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(items))
    return rank


def top_of_rows(
    model: RowScores,
    items: Sequence[str],
    top: int,
    *,
    budget: int = BAND_ENTRIES,
    advance: Callable[[int, int], None] = lambda _done, _total: None,
) -> Neighbours:
    """Each item's ``top`` best others with a positive score, best first (ties by name),
    computed band by band so only one band's product is ever in memory."""
    n = model.items
    name_rank = _name_rank(items)
    counts, targets, scores_ = [], [], []
    for start, end in _bands(model.costs(), budget):
        c, t, v = _top_of_band(model.rows(start, end), start, top, name_rank)
        counts.append(c)
        targets.append(t.astype(np.int32))
        scores_.append(v)
        advance(end, n)
    indptr = np.zeros(n + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=indptr[1:])
    return Neighbours(
        indptr,
        np.concatenate(targets) if targets else np.zeros(0, dtype=np.int32),
        np.concatenate(scores_) if scores_ else np.zeros(0),
    )


def top_of_matrix(weights: Any, items: Sequence[str], top: int) -> Neighbours:
    """:func:`top_of_rows` for a whole score matrix (sparse, or EASE's dense one)."""
    counts, targets, vals = _top_of_band(weights, 0, top, _name_rank(items))
    indptr = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Neighbours(indptr, targets.astype(np.int32), vals)


def model_rows(model: str, x: Any) -> RowScores:
    if model == "itemknn":
        return itemknn_rows(x)
    if model == "rp3beta":
        return rp3beta_rows(x)
    raise ValueError(f"{model!r} is not computed by rows; one of itemknn, rp3beta")


def top_neighbours(
    weights: Any, items: Sequence[str], top: int
) -> dict[str, list[tuple[str, float]]]:
    """Each product's ``top`` best others with a positive score, best first (ties by name)."""
    found = top_of_matrix(weights, items, top)
    near: dict[str, list[tuple[str, float]]] = {}
    for i, name in enumerate(items):
        start, end = int(found.indptr[i]), int(found.indptr[i + 1])
        if start < end:
            near[name] = [
                (items[c], float(v))
                for c, v in zip(
                    found.targets[start:end].tolist(), found.scores[start:end].tolist(), strict=True
                )
            ]
    return near
