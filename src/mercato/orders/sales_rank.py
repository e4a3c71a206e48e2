"""The sales rank: how well each product sells, from the order lines this module owns.

A product's **units** are its net units sold over the trailing window (``sales_rank_window_days``
by the day the order was placed): every line of an order that was paid and not cancelled,
less the units counted as returned on it (the returns module records them through
:func:`~mercato.orders.lifecycle.record_returned`). Its **score** weighs each day's units by
how long ago they were sold, halving every ``sales_rank_half_life_days``::

    score = sum over the window's days d of units(d) * 0.5 ** (age_in_days(d) / half_life)

Ages are whole days (today's units weigh 1), so the scores only move when an order, a
cancellation or a return changes the lines, or once a day as the window slides.

The worker's ``orders.sales_rank`` job recomputes them every ``sales_rank_interval_seconds``
(:func:`refresh`), stores the products whose figures changed in ``orders_sales_ranks`` and, in
the same transaction, publishes one ``SalesRanksChanged`` event per batch of changed products,
which the search index follows. The search module reads the figures back through the hook
``modules.wire`` registers (:func:`sales_ranks`): it may not import this module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mercato import events
from mercato.db import UnitOfWork
from mercato.orders.machine import NOT_SOLD
from mercato.orders.models import Order, OrderLine, SalesRank

SALES_RANKS_CHANGED = "SalesRanksChanged"
"""Payload ``{"product_ids": [...], "all": bool}``: these products' sales figures changed
(``all``: the shop went from no figures to some, or back; a demo shop's placeholders follow)."""
EVENT_BATCH = 500
SCORE_DIGITS = 3

ORDERS = cast(Table, Order.__table__)
LINES = cast(Table, OrderLine.__table__)
RANKS = cast(Table, SalesRank.__table__)


@dataclass(frozen=True, slots=True)
class ProductRank:
    units: int
    score: float


def _day(moment: datetime) -> date:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


async def compute(
    uow: UnitOfWork, *, now: datetime, window_days: int, half_life_days: float
) -> dict[str, ProductRank]:
    """Every product's figures as of ``now`` (products with no net units left out)."""
    today = _day(now)
    since = datetime.combine(today - timedelta(days=window_days - 1), datetime.min.time(), UTC)
    o, line = ORDERS.c, LINES.c
    rows = await uow.execute(
        select(line.product_id, o.created_at, line.quantity - line.quantity_returned)
        .join(ORDERS, o.id == line.order_id)
        .where(
            o.created_at >= since,
            o.created_at <= now,
            o.status.not_in(sorted(NOT_SOLD)),
            line.quantity > line.quantity_returned,
        )
    )
    units: defaultdict[str, int] = defaultdict(int)
    scores: defaultdict[str, float] = defaultdict(float)
    weights: dict[date, float] = {}
    for product_id, created_at, quantity in rows:
        day = _day(created_at)
        weight = weights.get(day)
        if weight is None:
            weight = weights[day] = 0.5 ** ((today - day).days / half_life_days)
        units[product_id] += int(quantity)
        scores[product_id] += int(quantity) * weight
    return {p: ProductRank(units[p], round(scores[p], SCORE_DIGITS)) for p in units}


async def stored(uow: UnitOfWork) -> dict[str, ProductRank]:
    r = RANKS.c
    rows = await uow.execute(select(r.product_id, r.units, r.score))
    return {p: ProductRank(int(u), float(s)) for p, u, s in rows}


async def refresh(
    uow: UnitOfWork, *, now: datetime, window_days: int, half_life_days: float
) -> list[str]:
    """Recompute every product's figures, store those that changed and publish
    ``SalesRanksChanged`` for them; the changed product ids (sorted)."""
    fresh = await compute(uow, now=now, window_days=window_days, half_life_days=half_life_days)
    old = await stored(uow)
    gone = sorted(set(old) - set(fresh))
    changed = sorted(p for p, figures in fresh.items() if old.get(p) != figures)
    r = RANKS.c
    for start in range(0, len(gone), EVENT_BATCH):
        batch = gone[start : start + EVENT_BATCH]
        await uow.execute(delete(RANKS).where(r.product_id.in_(batch)))
    new = [p for p in changed if p not in old]
    if new:
        insert = sqlite_insert if uow.is_sqlite else pg_insert
        rows = [
            {"product_id": p, "units": fresh[p].units, "score": fresh[p].score, "updated_at": now}
            for p in new
        ]
        await uow.execute(insert(RANKS).on_conflict_do_nothing(), rows)
    moved = [
        {"pid": p, "new_units": fresh[p].units, "new_score": fresh[p].score}
        for p in changed
        if p in old
    ]
    if moved:  # once a day, as the window slides, this is every product sold in it: one batch
        await uow.execute(
            update(RANKS)
            .where(r.product_id == bindparam("pid"))
            .values(units=bindparam("new_units"), score=bindparam("new_score"), updated_at=now),
            moved,
        )
    touched = sorted({*gone, *changed})
    everything = bool(old) != bool(fresh)  # the shop's first figures, or its last ones gone
    await events.publish_many(
        uow,
        (
            (
                SALES_RANKS_CHANGED,
                "sales-ranks",
                {"product_ids": touched[i : i + EVENT_BATCH], "all": everything},
            )
            for i in range(0, len(touched), EVENT_BATCH)
        ),
    )
    return touched


async def sales_ranks(
    uow: UnitOfWork, product_ids: Collection[str]
) -> tuple[bool, dict[str, ProductRank]]:
    """Whether the shop has any sales figures at all, and these products' figures (those with
    none sold in the window are left out)."""
    r = RANKS.c
    found: dict[str, ProductRank] = {}
    ids = list(product_ids)
    for start in range(0, len(ids), EVENT_BATCH):
        rows = await uow.execute(
            select(r.product_id, r.units, r.score).where(
                r.product_id.in_(ids[start : start + EVENT_BATCH])
            )
        )
        found.update({p: ProductRank(int(u), float(s)) for p, u, s in rows})
    known = bool(found) or bool(await uow.scalar(select(exists().select_from(RANKS))))
    return known, found


async def top_sellers(uow: UnitOfWork, limit: int) -> list[tuple[str, ProductRank]]:
    """The ``limit`` best-selling products by score (then units, then id), best first."""
    r = RANKS.c
    rows = await uow.execute(
        select(r.product_id, r.units, r.score)
        .order_by(r.score.desc(), r.units.desc(), r.product_id)
        .limit(limit)
    )
    return [(p, ProductRank(int(u), float(s))) for p, u, s in rows]
