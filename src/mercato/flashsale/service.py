"""The flash-sale module's public face. Other modules import this file only; the rules live in

* :mod:`~mercato.flashsale.sales`: scheduling (the allocation set aside through the
  inventory), counters, the end, the reconciliation of the gate with the database;
* :mod:`~mercato.flashsale.queue`: the waiting room and the admission pass;
* :mod:`~mercato.flashsale.purchase`: what the checkout calls (``take_admitted_unit``,
  ``mark_purchased``, ``return_unit``);
* :mod:`~mercato.flashsale.gate`: the gate protocol, in Redis (Lua) or in memory;
* :mod:`~mercato.flashsale.tokens`: signed admission tokens;
* :mod:`~mercato.flashsale.keeper`: the gate, pace, windows and limits of one process.

``join`` and ``poll`` take the database rather than a unit of work: they answer from the gate
(the waiting room lives there) and open a transaction only for the sale's admission pass (which
holds the sale's row, at most every ``admit_every`` seconds per process) and for the sale's
read (as often), never per request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, select

from mercato.db import Database, utcnow
from mercato.flashsale.common import (
    ENTRIES,
    SALES,
    EntryInfo,
    SaleInfo,
    SaleVariantInfo,
    find_entry,
    get_sale,
    hold_owner,
    not_in_queue,
)
from mercato.flashsale.gate import (
    Gate,
    GateUnavailable,
    MemoryGate,
    Place,
    RedisGate,
    gate_for,
)
from mercato.flashsale.keeper import Keeper, keeper_for, pace_rate
from mercato.flashsale.purchase import (
    AdmittedUnits,
    Purchase,
    mark_purchased,
    return_unit,
    take_admitted_unit,
)
from mercato.flashsale.queue import (
    PassResult,
    QueueState,
    admit_due,
    describe,
    enter,
    expire_holds,
    far_poll,
    find_place,
    join_queue,
    place_of,
    queue_state,
    slow_poll,
    start_if_due,
    sync_gate,
)
from mercato.flashsale.sales import (
    NewSale,
    Reconciliation,
    SaleCounters,
    end_sale,
    reconcile,
    sale_counters,
    sales_to_watch,
    schedule_sale,
)
from mercato.flashsale.tokens import Admission, make_token, read_token
from mercato.runtime import Runtime

log = logging.getLogger("mercato.flashsale")


async def _admission_pass(
    db: Database, keeper: Keeper, sale_id: str, now: datetime
) -> PassResult | None:
    """Run the sale's admission pass if this process has not lately (``None`` if not)."""
    if not keeper.pass_due(sale_id):
        return None
    return await db.run(lambda uow: admit_due(uow, keeper, sale_id, now))


async def _answer(
    db: Database,
    keeper: Keeper,
    sale: SaleInfo,
    customer_id: str,
    now: datetime,
    place: Place | None,
    unreachable: bool,
) -> QueueState:
    """Run the admission pass if due, and answer the buyer's state: what the gate says, read
    again if the pass admitted anyone (the buyer may be among them)."""
    result = await _admission_pass(db, keeper, sale.id, now)
    paused = unreachable or (result is not None and result.paused)
    if result is not None and (result.admitted or result.lapsed):
        place, again = await find_place(None, keeper, sale.id, customer_id, now)
        paused = paused or again
    if result is not None:
        sale = await keeper.sale(db, sale.id)
    if place is None:
        raise not_in_queue(sale.id)
    if unreachable and place.state == "waiting" and place.position is None:
        # The gate cannot be reached: the database may know the buyer as admitted.
        async with db.transaction() as uow:
            entry = await find_entry(uow, sale.id, customer_id)
        if entry is not None:
            place = place_of(entry)
    return describe(keeper, sale, place, now, paused=paused)


async def _open(db: Database, keeper: Keeper, sale_id: str, now: datetime) -> SaleInfo:
    """The first join after the start opens the sale: one request of this process does (by an
    admission pass), those arriving meanwhile wait for it and read what it did."""
    async with keeper.lock(f"open:{sale_id}"):
        sale = await keeper.sale(db, sale_id)
        if sale.status == "scheduled":
            await db.run(lambda uow: admit_due(uow, keeper, sale_id, now))
            keeper.forget_sale(sale_id)
            sale = await keeper.sale(db, sale_id)
        return sale


async def join(
    db: Database,
    keeper: Keeper,
    sale_id: str,
    customer_id: str,
    *,
    ip: str,
    now: datetime | None = None,
) -> QueueState:
    """Join the sale's waiting room (idempotent per customer) and answer the state, as a poll
    would. One gate call (the place) and no database transaction, but for the admission pass
    (at most every ``admit_every`` seconds per process) and the sale's read (as often). 409
    ``sale_ended``; 429 ``rate_limited`` past the customer's or the address's allowance."""
    now = now or utcnow()
    await keeper.throttle(customer_id, ip)
    sale = await keeper.sale(db, sale_id)
    if sale.status == "scheduled" and now >= sale.starts_at:
        sale = await _open(db, keeper, sale_id, now)
    place, unreachable = await enter(keeper, sale, customer_id, now)
    return await _answer(db, keeper, sale, customer_id, now, place, unreachable)


async def poll(
    db: Database,
    keeper: Keeper,
    sale_id: str,
    customer_id: str,
    *,
    ip: str,
    now: datetime | None = None,
) -> QueueState:
    """The buyer's state in the waiting room (``waiting`` with position and estimated wait,
    ``admitted`` with the admission token and its expiry, ``sold_out``, ``expired``,
    ``purchased``); polling is what keeps a waiting place. One gate call and no database
    transaction; runs the sale's admission pass first (at most every ``admit_every`` seconds
    per process), so buyers are let in while they poll and a shop whose sales nobody polls
    does nothing. 404 ``not_in_queue``; 429."""
    now = now or utcnow()
    await keeper.throttle(customer_id, ip)
    sale = await keeper.sale(db, sale_id)
    place, unreachable = await find_place(None, keeper, sale_id, customer_id, now)
    return await _answer(db, keeper, sale, customer_id, now, place, unreachable)


async def watch_sales(runtime: Runtime, now: datetime | None = None) -> int:
    """The worker's job: for each sale started and not ended, end it past its end time, else
    run its admission pass (start, returns, lapses, admissions) and reconcile the gate with the
    database. A shop with no sale running pays one indexed read per run."""
    now = now or utcnow()
    keeper = keeper_for(runtime)
    async with runtime.db.transaction() as uow:
        sale_ids = await sales_to_watch(uow, now)
    done = 0
    for sale_id in sale_ids:
        done += await _watch_one(runtime.db, keeper, sale_id, now)
    return done


async def _watch_one(db: Database, keeper: Keeper, sale_id: str, now: datetime) -> int:
    async with db.transaction() as uow:
        sale = await get_sale(uow, sale_id)
    if now >= sale.ends_at:
        await db.run(lambda uow: end_sale(uow, keeper.gate, sale_id, reason="time", now=now))
        return 1
    result = await db.run(lambda uow: admit_due(uow, keeper, sale_id, now))
    try:
        await db.run(lambda uow: reconcile(uow, keeper.gate, sale_id))
    except GateUnavailable as exc:
        log.warning("flash sale %s: not reconciled, the gate is unreachable: %s", sale_id, exc)
    return result.admitted + result.lapsed + result.returned


__all__ = [
    "Admission",
    "AdmittedUnits",
    "EntryInfo",
    "Gate",
    "GateUnavailable",
    "Keeper",
    "MemoryGate",
    "NewSale",
    "PassResult",
    "Place",
    "Purchase",
    "QueueState",
    "Reconciliation",
    "RedisGate",
    "SaleCounters",
    "SaleInfo",
    "SaleVariantInfo",
    "admit_due",
    "describe",
    "end_sale",
    "expire_holds",
    "far_poll",
    "gate_for",
    "get_sale",
    "hold_owner",
    "join",
    "join_queue",
    "keeper_for",
    "make_token",
    "mark_purchased",
    "pace_rate",
    "poll",
    "queue_state",
    "read_token",
    "reconcile",
    "return_unit",
    "sale_counters",
    "sales_to_watch",
    "schedule_sale",
    "slow_poll",
    "start_if_due",
    "sync_gate",
    "take_admitted_unit",
    "watch_sales",
]


# --------------------------------------------------------------------------------------------
# What the shop's and the back office's pages read (read-only). Imported here, at the end, so
# that this part stays an addition to the file.

from dataclasses import dataclass  # noqa: E402

from mercato.catalog import service as catalog  # noqa: E402
from mercato.db import UnitOfWork  # noqa: E402
from mercato.flashsale.common import SALE_VARIANTS, sale_info  # noqa: E402


@dataclass(frozen=True, slots=True)
class SaleItem:
    """A variant of a sale as the pages show it: its product, its regular price and the units
    of it set aside and sold."""

    variant_id: str
    sku: str
    product_id: str
    product_title: str
    variant_title: str
    regular_price: int
    currency: str
    image: str | None
    allocation: int
    sold: int


@dataclass(frozen=True, slots=True)
class SaleView:
    """A sale with its status as buyers see it now (the stored one may lag the clock) and
    its variants as products."""

    sale: SaleInfo
    status: str
    items: tuple[SaleItem, ...]


async def _views(uow: UnitOfWork, sales: list[SaleInfo], now: datetime) -> list[SaleView]:
    """The sales with their variants as products: one read of the sales' variants, one of
    the catalog."""
    ids = [s.id for s in sales]
    shares: dict[str, list[SaleVariantInfo]] = {}
    if ids:
        rows = await uow.execute(
            select(SALE_VARIANTS)
            .where(SALE_VARIANTS.c.sale_id.in_(ids))
            .order_by(SALE_VARIANTS.c.sale_id, SALE_VARIANTS.c.variant_id)
        )
        for r in rows:
            shares.setdefault(r.sale_id, []).append(
                SaleVariantInfo(r.variant_id, r.allocation, r.sold)
            )
    variants = await catalog.get_variants(
        uow, {v.variant_id for found in shares.values() for v in found}
    )

    def item(sale: SaleInfo, share: SaleVariantInfo) -> SaleItem:
        v = variants.get(share.variant_id)
        return SaleItem(
            variant_id=share.variant_id,
            sku=v.sku if v else share.variant_id,
            product_id=v.product_id if v else "",
            product_title=v.product_title if v else share.variant_id,
            variant_title=v.title if v else "",
            regular_price=v.price if v else sale.price,
            currency=v.currency if v else sale.currency,
            image=v.image if v else None,
            allocation=share.allocation,
            sold=share.sold,
        )

    return [
        SaleView(
            sale=sale,
            status=sale.status_at(now),
            items=tuple(item(sale, share) for share in shares.get(sale.id, [])),
        )
        for sale in sales
    ]


async def sale_view(uow: UnitOfWork, sale_id: str, now: datetime | None = None) -> SaleView:
    """One sale as its page shows it to shoppers. 404 for an unknown sale."""
    sale = await get_sale(uow, sale_id)
    return (await _views(uow, [sale], now or utcnow()))[0]


async def list_sales(
    uow: UnitOfWork, *, current_only: bool = False, limit: int = 100, now: datetime | None = None
) -> list[SaleView]:
    """Sales as the pages list them: ``current_only``, those live or still to come, the
    soonest first (the shop's list and the home page's link); else every sale, the latest
    start first (the back office)."""
    now = now or utcnow()
    query = select(SALES).limit(limit)
    if current_only:
        query = query.where(SALES.c.status != "ended", SALES.c.ends_at > now).order_by(
            SALES.c.starts_at, SALES.c.id
        )
    else:
        query = query.order_by(SALES.c.starts_at.desc(), SALES.c.id.desc())
    sales = [sale_info(row) for row in await uow.execute(query)]
    return await _views(uow, sales, now)


__all__ += ["SaleItem", "SaleView", "list_sales", "sale_view"]


async def queue_lengths(runtime: Runtime) -> Mapping[tuple[str, ...], float]:
    """Buyers in the waiting room of each sale not ended yet, by ``(sale_id, state)`` (waiting,
    admitted): the operators' queue-length gauge, read when the metrics are scraped."""
    query = (
        select(ENTRIES.c.sale_id, ENTRIES.c.state, func.count())
        .join(SALES, SALES.c.id == ENTRIES.c.sale_id)
        .where(SALES.c.status != "ended", ENTRIES.c.state.in_(("waiting", "admitted")))
        .group_by(ENTRIES.c.sale_id, ENTRIES.c.state)
    )
    async with runtime.db.transaction() as uow:
        return {(sale, state): int(n) for sale, state, n in await uow.execute(query)}


__all__ += ["queue_lengths"]
