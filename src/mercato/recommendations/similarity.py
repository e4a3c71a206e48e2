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
itself); :func:`top_neighbours` keeps each product's best ``top`` others.

The defaults (shrink 50; alpha 0.5, beta 0; lambda 200) are the best of a small grid on the demo
history's hold-out (docs/benchmarks.md); a shop with much more data may tune them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def _without_diagonal(scores: Any) -> Any:
    scores = sp.csr_matrix(scores)
    scores.setdiag(0)
    scores.eliminate_zeros()
    return scores


def itemknn(x: Any, *, shrink: float = 50.0) -> Any:
    """Cosine similarity with shrinkage, sparse (items x items)."""
    x = sp.csr_matrix(x, dtype=np.float64)
    co = (x.T @ x).tocsr()
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())  # binary: ‖column‖ = sqrt(buyers)
    co = co.tocoo()
    data = co.data / (norms[co.row] * norms[co.col] + shrink)
    return _without_diagonal(sp.csr_matrix((data, (co.row, co.col)), shape=co.shape))


def _row_normalized(m: Any) -> Any:
    sums = np.asarray(m.sum(axis=1)).ravel()
    sums[sums == 0] = 1.0
    return sp.diags(1.0 / sums) @ m


def rp3beta(x: Any, *, alpha: float = 0.5, beta: float = 0.0) -> Any:
    """P(j | i) of the walk item -> customer -> item, divided by popularity(j) ** beta."""
    x = sp.csr_matrix(x, dtype=np.float64)
    p_ui = _row_normalized(x).tocsr()
    p_iu = _row_normalized(x.T.tocsr()).tocsr()
    if alpha != 1.0:
        p_ui.data **= alpha
        p_iu.data **= alpha
    walk = (p_iu @ p_ui).tocsr()
    popularity = np.asarray(x.sum(axis=0)).ravel()
    damp = np.zeros_like(popularity)
    bought = popularity > 0
    damp[bought] = popularity[bought] ** -beta
    return _without_diagonal(walk @ sp.diags(damp))


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


def top_neighbours(
    weights: Any, items: Sequence[str], top: int
) -> dict[str, list[tuple[str, float]]]:
    """Each product's ``top`` best others with a positive score, best first (ties by name)."""
    found: dict[str, list[tuple[str, float]]] = {}
    if sp.issparse(weights):
        csr = sp.csr_matrix(weights)
        for i, name in enumerate(items):
            start, end = csr.indptr[i], csr.indptr[i + 1]
            cols, vals = csr.indices[start:end], csr.data[start:end]
            keep = vals > 0
            found_i = sorted(
                zip(cols[keep].tolist(), vals[keep].tolist(), strict=True),
                key=lambda cv: (-cv[1], items[cv[0]]),
            )[:top]
            if found_i:
                found[name] = [(items[c], float(v)) for c, v in found_i]
        return found
    dense = np.asarray(weights)
    for i, name in enumerate(items):
        row = dense[i]
        candidates = np.argsort(-row, kind="stable")[: top * 2]
        best = sorted(
            ((int(c), float(row[c])) for c in candidates if row[c] > 0),
            key=lambda cv: (-cv[1], items[cv[0]]),
        )[:top]
        if best:
            found[name] = [(items[c], v) for c, v in best]
    return found
