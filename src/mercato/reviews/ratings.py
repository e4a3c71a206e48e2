"""Each product's rating: the count, average and 1-5 histogram of its approved reviews.

The figures live in one row per product and change by deltas in the transaction that changes
a review (approved, rejected, edited, deleted), together with a ``ProductRatingChanged`` event
in the outbox, from which the search index takes the new rating. A delta (``count = count +
1``) rather than a recount keeps concurrent changes to one product's reviews exact: each
transaction adds its own change to whatever the others committed.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from mercato import events
from mercato.db import UnitOfWork, utcnow
from mercato.reviews.common import RATINGS, insert

PRODUCT_RATING_CHANGED = "ProductRatingChanged"
_STARS = ("stars_1", "stars_2", "stars_3", "stars_4", "stars_5")


@dataclass(frozen=True, slots=True)
class RatingSummary:
    """A product's approved reviews in figures; ``histogram[n - 1]`` counts the n-star ones."""

    count: int = 0
    total: int = 0
    histogram: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)

    @property
    def average(self) -> float | None:
        """The mean rating, unrounded (the index filters and sorts on it); None when unrated."""
        return self.total / self.count if self.count else None

    @property
    def rounded(self) -> float | None:
        """The mean rating to two decimals, as answers and pages show it."""
        return round(self.total / self.count, 2) if self.count else None


NOT_RATED = RatingSummary()


def _summary(row: object) -> RatingSummary:
    stars = tuple(int(getattr(row, name)) for name in _STARS)
    return RatingSummary(int(row.count), int(row.total), stars)  # type: ignore[attr-defined, arg-type]


def payload(product_id: str, summary: RatingSummary) -> dict[str, object]:
    return {
        "product_id": product_id,
        "average": summary.rounded,
        "count": summary.count,
        "histogram": {str(n + 1): c for n, c in enumerate(summary.histogram)},
    }


async def apply_change(
    uow: UnitOfWork, product_id: str, before: int | None, after: int | None
) -> RatingSummary | None:
    """A review of ``product_id`` counted with rating ``before`` (None: it was not approved)
    now counts with ``after`` (None: it no longer does). Writes the delta and publishes the
    new figures; None (and nothing written) when nothing changed."""
    if before == after:
        return None
    delta = {name: 0 for name in _STARS}
    count = total = 0
    if before is not None:
        delta[_STARS[before - 1]] -= 1
        count, total = count - 1, total - before
    if after is not None:
        delta[_STARS[after - 1]] += 1
        count, total = count + 1, total + after
    now = utcnow()
    c = RATINGS.c
    changes = {name: c[name] + value for name, value in delta.items() if value}
    changes.update(count=c.count + count, total=c.total + total)
    statement: Any
    if before is None:
        # Only additions: the product's first approved review creates its row. (A row of
        # negative deltas may not even be proposed: the database checks it before the conflict.)
        values = insert(uow, RATINGS).values(
            product_id=product_id, count=count, total=total, updated_at=now, **delta
        )
        statement = values.on_conflict_do_update(
            index_elements=[c.product_id], set_={**changes, "updated_at": now}
        )
    else:  # it was counted, so the row exists
        statement = (
            update(RATINGS).where(c.product_id == product_id).values(**changes, updated_at=now)
        )
    statement = statement.returning(*RATINGS.c)
    row = (await uow.execute(statement)).one()
    summary = _summary(row)
    await events.publish(uow, PRODUCT_RATING_CHANGED, product_id, payload(product_id, summary))
    return summary


async def ratings(uow: UnitOfWork, product_ids: Collection[str]) -> dict[str, RatingSummary]:
    """The figures of these products; products without an approved review are absent."""
    wanted = sorted(set(product_ids))
    found: dict[str, RatingSummary] = {}
    for start in range(0, len(wanted), 500):
        chunk = wanted[start : start + 500]
        rows = await uow.execute(
            select(RATINGS).where(RATINGS.c.product_id.in_(chunk), RATINGS.c.count > 0)
        )
        for row in rows:
            found[row.product_id] = _summary(row)
    return found


async def rating(uow: UnitOfWork, product_id: str) -> RatingSummary:
    """One product's figures (:data:`NOT_RATED` when none of its reviews is approved)."""
    return (await ratings(uow, [product_id])).get(product_id, NOT_RATED)
