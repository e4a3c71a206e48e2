"""Scheduling a sale (its allocation set aside through the inventory), its counters, its end
(the unsold units back to regular stock), and the reconciliation of the gate with the database.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, insert, select, update

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.flashsale.common import (
    ENTRIES,
    HOLD_MARGIN_SECONDS,
    MAX_ALLOCATION,
    SALE_VARIANTS,
    SALES,
    SaleInfo,
    get_sale,
    hold_owner,
)
from mercato.flashsale.gate import Called, Gate, GateUnavailable, left_state
from mercato.flashsale.keeper import forget_sale_everywhere
from mercato.flashsale.queue import left_of_row, sync_gate
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.problems import Problem, validation_problem

log = logging.getLogger("mercato.flashsale")


@dataclass(frozen=True, slots=True)
class NewSale:
    title: str
    variants: Sequence[tuple[str, int]]  # (variant_id, units set aside)
    price: int  # minor units of currency
    currency: str
    starts_at: datetime
    ends_at: datetime
    admission_rate: int
    per_customer_limit: int = 1


@dataclass(frozen=True, slots=True)
class SaleCounters:
    """A sale and its live figures: buyers waiting (in the gate: 0 while it is unreachable),
    holding units, who bought and whose place lapsed after an admission; units sold, held and
    remaining; and what the gate says (``None``: unknown or unreachable)."""

    sale: SaleInfo
    queued: int
    admitted: int
    purchased: int
    expired: int
    gate_remaining: int | None
    gate_reachable: bool


def _check_new_sale(new: NewSale, now: datetime) -> None:
    if not new.variants:
        raise validation_problem("variants", "at least one variant is required")
    seen: set[str] = set()
    for i, (variant_id, units) in enumerate(new.variants):
        if variant_id in seen:
            raise validation_problem(f"variants[{i}].variant_id", "is listed twice")
        seen.add(variant_id)
        if not 1 <= units <= MAX_ALLOCATION:
            raise validation_problem(f"variants[{i}].allocation", f"must be 1 to {MAX_ALLOCATION}")
    if sum(units for _, units in new.variants) > MAX_ALLOCATION:
        raise validation_problem("variants", f"at most {MAX_ALLOCATION} units in all")
    if new.ends_at <= new.starts_at:
        raise validation_problem("ends_at", "must be after starts_at")
    if new.ends_at <= now:
        raise validation_problem("ends_at", "must be in the future")


async def _check_variants(uow: UnitOfWork, new: NewSale) -> None:
    found = await catalog.get_variants(uow, [v for v, _ in new.variants])
    for i, (variant_id, _) in enumerate(new.variants):
        variant = found.get(variant_id)
        if variant is None:
            raise validation_problem(
                f"variants[{i}].variant_id", f"no variant {variant_id!r}", code="unknown_variant"
            )
        if variant.currency != new.currency:
            raise validation_problem(
                "currency",
                f"{variant_id} is priced in {variant.currency}, the sale in {new.currency}",
                code="currency_mismatch",
            )
        if not variant.active:
            raise Problem(
                409,
                "variant_unavailable",
                f"Variant {variant_id} is not for sale",
                variant_id=variant_id,
            )


def _not_enough_stock(problem: Problem) -> Problem:
    return Problem(
        409,
        "insufficient_stock",
        f"Not enough stock to set aside for the sale: {problem.detail}",
        title="Not enough stock",
        lines=problem.extra.get("lines", []),
    )


async def schedule_sale(uow: UnitOfWork, new: NewSale, now: datetime | None = None) -> SaleInfo:
    """Create a sale and set its allocation aside: one inventory hold per variant owned by the
    sale (from any active warehouse), which regular checkouts cannot take, lasting until a day
    after the sale's end (if no worker ended it, the inventory's expiry gives the units back).
    422 naming the field for bad input (``unknown_variant``, ``currency_mismatch``), 409
    ``variant_unavailable``, 409 ``insufficient_stock`` (nothing set aside) with the lines
    short."""
    now = now or utcnow()
    _check_new_sale(new, now)
    await _check_variants(uow, new)
    sale_id = new_id("fls")
    ttl = int((new.ends_at - now).total_seconds()) + HOLD_MARGIN_SECONDS
    try:
        await inventory.reserve(
            uow,
            hold_owner(sale_id),
            list(new.variants),
            None,
            ttl,
            now=now,
            check_catalog=False,
            new_owner=True,
        )
    except Problem as problem:
        if problem.code in ("out_of_stock", "stock_contention"):
            raise _not_enough_stock(problem) from None
        raise
    await uow.execute(
        insert(SALES).values(
            id=sale_id,
            title=new.title,
            price=new.price,
            currency=new.currency,
            allocation=sum(units for _, units in new.variants),
            per_customer_limit=new.per_customer_limit,
            admission_rate=new.admission_rate,
            starts_at=new.starts_at,
            ends_at=new.ends_at,
            status="scheduled",
            sold=0,
            held=0,
            admissions=0,
            next_position=0,
            served_through=0,
            created_at=now,
        )
    )
    await uow.execute(
        insert(SALE_VARIANTS),
        [
            {"sale_id": sale_id, "variant_id": v, "allocation": units, "sold": 0}
            for v, units in new.variants
        ],
    )
    return await get_sale(uow, sale_id, variants=True)


async def sale_counters(uow: UnitOfWork, gate: Gate, sale_id: str) -> SaleCounters:
    """The sale with its live counters (one grouped count of its places)."""
    sale = await get_sale(uow, sale_id, variants=True)
    rows = await uow.execute(
        select(ENTRIES.c.state, func.count())
        .where(ENTRIES.c.sale_id == sale_id)
        .group_by(ENTRIES.c.state)
    )
    by_state = {state: int(count) for state, count in rows}
    try:
        gate_remaining, reachable = await gate.remaining(sale_id), True
        queued = await gate.waiting(sale_id)
    except GateUnavailable:
        gate_remaining, reachable, queued = None, False, 0
    return SaleCounters(
        sale=sale,
        queued=queued,
        admitted=by_state.get("admitted", 0) + by_state.get("checking_out", 0),
        purchased=by_state.get("purchased", 0),
        expired=by_state.get("expired", 0),
        gate_remaining=gate_remaining,
        gate_reachable=reachable,
    )


async def end_sale(
    uow: UnitOfWork, gate: Gate, sale_id: str, *, reason: str = "staff", now: datetime | None = None
) -> SaleInfo:
    """End the sale (staff early, or the worker at its end time): buyers still holding units
    lose them, and every unit not sold goes back to regular stock (the sale's inventory hold is
    released). Idempotent: an ended sale is answered as it is."""
    now = now or utcnow()
    sale = await get_sale(uow, sale_id, lock=True)
    if sale.status == "ended":
        return await get_sale(uow, sale_id, variants=True)
    # This process's waiting room hears of it at once; the others within a moment.
    uow.after_commit(lambda: forget_sale_everywhere(sale_id))
    await uow.execute(
        update(ENTRIES)
        .where(ENTRIES.c.sale_id == sale_id, ENTRIES.c.state.in_(("admitted", "checking_out")))
        .values(state="expired", expired_reason="sale_ended", finished_at=now)
    )
    await uow.execute(
        update(SALES)
        .where(SALES.c.id == sale_id)
        .values(status="ended", held=0, ended_at=now, end_reason=reason)
    )
    released = await inventory.release(uow, hold_owner(sale_id), "flash sale ended")
    log.info(
        "flash sale %s ended (%s): %d sold, %d unit(s) back to stock",
        sale_id,
        reason,
        sale.sold,
        sum(r.quantity for r in released),
    )

    async def forget() -> None:
        await gate.forget(sale_id)

    uow.after_commit(forget)
    return await get_sale(uow, sale_id, variants=True)


async def sales_to_watch(uow: UnitOfWork, now: datetime | None = None) -> list[str]:
    """Sales the worker looks after now: started (or due to) and not ended. One indexed read,
    which is all a shop without a sale does."""
    now = now or utcnow()
    rows = await uow.execute(
        select(SALES.c.id)
        .where(SALES.c.status.in_(("scheduled", "live")), SALES.c.starts_at <= now)
        .order_by(SALES.c.starts_at, SALES.c.id)
    )
    return list(rows.scalars())


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """What the reconciliation found: the gate's figure before, the database's, whether the
    sale's counters had to be corrected from its places, and whether anything was repaired."""

    sale_id: str
    gate_before: int | None
    database: int
    counters_fixed: bool
    repaired: bool
    places_repaired: int = 0


async def reconcile(uow: UnitOfWork, gate: Gate, sale_id: str) -> Reconciliation:
    """Compare the gate with the database, which is the record, and repair the gate.

    Under the sale's lock: the sale's ``held`` and ``sold`` are checked against its places
    (units of admitted buyers, units bought) and corrected from them if they differ; then the
    gate is set to ``allocation - sold - held`` (loaded after a Redis restart or flush). An
    ended sale's counter is dropped. Raises :class:`GateUnavailable` when the gate cannot be
    reached (the next run tries again; admissions are paused meanwhile)."""
    sale = await get_sale(uow, sale_id, lock=True)
    if sale.status == "ended":
        await gate.forget(sale_id)
        return Reconciliation(sale_id, None, 0, False, False)
    held_units = func.coalesce(
        func.sum(case((ENTRIES.c.state.in_(("admitted", "checking_out")), ENTRIES.c.units))), 0
    )
    row = (
        await uow.execute(
            select(held_units.label("held"), func.coalesce(func.sum(ENTRIES.c.purchased), 0)).where(
                ENTRIES.c.sale_id == sale_id
            )
        )
    ).one()
    held, sold = int(row[0]), int(row[1])
    fixed = (held, sold) != (sale.held, sale.sold)
    if fixed:
        log.error(
            "flash sale %s: counters held=%d sold=%d, its places say held=%d sold=%d; corrected",
            sale_id,
            sale.held,
            sale.sold,
            held,
            sold,
        )
        await uow.execute(update(SALES).where(SALES.c.id == sale_id).values(held=held, sold=sold))
        sale = await get_sale(uow, sale_id)
    before, truth = await sync_gate(gate, sale)
    repaired = before != truth
    if repaired:
        log.warning(
            "flash sale %s: the gate said %s, the database %d; repaired", sale_id, before, truth
        )
    places = await _repair_places(uow, gate, sale_id)
    return Reconciliation(sale_id, before, truth, fixed, repaired, places)


_HOLDING = ("admitting", "admitted", "checking_out", "purchased")


async def _repair_places(uow: UnitOfWork, gate: Gate, sale_id: str) -> int:
    """Make the gate's record of the buyers who left the line say what the database says (a
    write after a commit that never came, a Redis that lost them): a buyer the database knows
    as admitted, checking out or having bought is that; one the gate thinks holds units and
    the database does not is not (put back in line if an admission pass died halfway, else
    expired). The caller holds the sale's row, so no pass is halfway. How many were repaired."""
    left = await gate.left(sale_id)
    rows = await uow.execute(
        select(
            ENTRIES.c.customer_id,
            ENTRIES.c.state,
            ENTRIES.c.position,
            ENTRIES.c.units,
            ENTRIES.c.purchased,
            ENTRIES.c.hold_expires_at,
            ENTRIES.c.expired_reason,
        ).where(ENTRIES.c.sale_id == sale_id)
    )
    fix: dict[str, str] = {}
    recorded: set[str] = set()
    for r in rows:
        recorded.add(r.customer_id)
        said = left.get(r.customer_id, "").split("|")[0]
        if r.state != "expired" and said != r.state:
            fix[r.customer_id] = left_of_row(
                r.state, r.position, r.units, r.purchased, r.hold_expires_at
            )
        elif r.state == "expired" and said in _HOLDING:
            fix[r.customer_id] = left_state("expired", r.position, reason=r.expired_reason)
    back: list[Called] = []
    for customer_id, raw in left.items():
        kind, position = raw.split("|")[:2]
        if customer_id in recorded or kind not in _HOLDING:
            continue
        if kind == "admitting" and position:
            back.append(Called(customer_id, int(position), 0.0))
        else:
            fix[customer_id] = left_state(
                "expired", int(position) if position else None, reason="lost"
            )
    if back:
        await gate.requeue(sale_id, back)
    if fix:
        await gate.settle(sale_id, fix)
    if fix or back:
        log.warning(
            "flash sale %s: %d place(s) in the gate repaired from the database",
            sale_id,
            len(fix) + len(back),
        )
    return len(fix) + len(back)
