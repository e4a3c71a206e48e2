"""The flash-sale module's public face. Other modules import this file only; the rules live in

* :mod:`~mercato.flashsale.sales`: scheduling (the allocation set aside through the
  inventory), counters, the end, the reconciliation of the gate with the database;
* :mod:`~mercato.flashsale.queue`: the waiting room and the admission pass;
* :mod:`~mercato.flashsale.purchase`: what the checkout calls (``take_admitted_unit``,
  ``mark_purchased``, ``return_unit``);
* :mod:`~mercato.flashsale.gate`: the gate protocol, in Redis (Lua) or in memory;
* :mod:`~mercato.flashsale.tokens`: signed admission tokens;
* :mod:`~mercato.flashsale.keeper`: the gate, pace, windows and limits of one process.

``join`` and ``poll`` take the database rather than a unit of work: a poll runs the sale's
admission pass (which holds the sale's row) in a short transaction of its own, before the
buyer's own read, so that a poll never waits for its own place's lock while holding the sale's.
"""

from __future__ import annotations

import logging
from datetime import datetime

from mercato.db import Database, utcnow
from mercato.flashsale.common import (
    EntryInfo,
    SaleInfo,
    SaleVariantInfo,
    get_sale,
    hold_owner,
)
from mercato.flashsale.gate import Gate, GateUnavailable, MemoryGate, RedisGate, gate_for
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
    expire_holds,
    join_queue,
    queue_state,
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


async def _admission_pass(db: Database, keeper: Keeper, sale_id: str, now: datetime) -> bool:
    """Run the sale's admission pass if this process has not lately; whether it is paused."""
    if not keeper.pass_due(sale_id):
        return False
    result = await db.run(lambda uow: admit_due(uow, keeper, sale_id, now))
    return result.paused


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
    would. 429 ``rate_limited`` past the customer's or the address's allowance."""
    now = now or utcnow()
    await keeper.throttle(customer_id, ip)
    await db.run(lambda uow: join_queue(uow, keeper, sale_id, customer_id, now))
    paused = await _admission_pass(db, keeper, sale_id, now)
    async with db.transaction() as uow:
        return await queue_state(uow, keeper, sale_id, customer_id, now, paused=paused)


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
    ``purchased``); polling is what keeps a waiting place. Runs the sale's admission pass
    first (at most every ``admit_every`` seconds per process), so buyers are let in while they
    poll and a shop whose sales nobody polls does nothing. 404 ``not_in_queue``; 429."""
    now = now or utcnow()
    await keeper.throttle(customer_id, ip)
    paused = await _admission_pass(db, keeper, sale_id, now)
    async with db.transaction() as uow:
        return await queue_state(uow, keeper, sale_id, customer_id, now, paused=paused)


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
    "start_if_due",
    "sync_gate",
    "take_admitted_unit",
    "watch_sales",
]
