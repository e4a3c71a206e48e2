"""Allocation, picking and packing: where an order's units leave from, and the warehouse's work
on them before they ship.

**Allocation** (:func:`allocate_order`): a paid order's lines are split over the warehouses its
committed reservations (owner = the checkout id) took the units from: one fulfilment per
warehouse, unique per (order, warehouse), so the ``OrderPlaced`` consumer and a shipment that
gets there first can both call it safely. A cancelled order's fulfilments are stopped
(:func:`cancel_fulfilments`). Marking a fulfilment picked or packed moves a paid order to
``fulfilling``: work on it has started.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import func, insert, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.fulfilment.queries import (
    FULFILMENTS,
    ITEMS,
    PACKABLE,
    PICKABLE,
    SHIPMENT_ITEMS,
    SHIPMENTS,
    FulfilmentInfo,
    check_actor,
    dialect_insert,
    fulfilments_for_order,
    get_fulfilment,
)
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.marketplace import service as marketplace
from mercato.orders import service as orders
from mercato.problems import Problem, not_found

log = logging.getLogger("mercato.fulfilment")

FulfilmentStep = Literal["picked", "packed"]
_SOURCES: dict[str, tuple[str, ...]] = {"picked": PICKABLE, "packed": PACKABLE}


# -- allocation ------------------------------------------------------------------------------------


def _plan_allocation(
    order: orders.OrderInfo,
    held: Sequence[inventory.ReservationInfo],
    fallback: str | None,
    seller_warehouses: dict[str, str] | None = None,
) -> dict[str, list[tuple[orders.OrderLineInfo, int]]]:
    """warehouse code → [(line, units)]: each line's units from the warehouses its variant was
    reserved in (alphabetical), anything the reservations do not cover from ``fallback``. A
    marketplace seller's line (``seller_warehouses``: seller id → its warehouse's code) draws
    only on its seller's warehouse, the shop's lines on the others."""
    sellers = seller_warehouses or {}
    theirs = set(sellers.values())
    pools: dict[str, list[list[Any]]] = defaultdict(list)
    for r in sorted(held, key=lambda r: (r.variant_id, r.warehouse_code)):
        pools[r.variant_id].append([r.warehouse_code, r.quantity])
    plan: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_id = {line.id: line for line in order.lines}
    for line in order.lines:
        need = line.quantity
        own = sellers.get(line.seller_id)
        for pool in pools.get(line.variant_id, []):
            if (pool[0] != own) if own is not None else (pool[0] in theirs):
                continue
            take = min(need, pool[1])
            if take > 0:
                plan[pool[0]][line.id] += take
                pool[1] -= take
                need -= take
        if need > 0:
            if fallback is None:
                raise Problem(
                    409,
                    "allocation_failed",
                    "The order's units are not held in any warehouse, and none exists",
                    order_id=order.id,
                )
            plan[own or fallback][line.id] += need
    return {
        code: [(by_id[line_id], units) for line_id, units in sorted(lines.items())]
        for code, lines in sorted(plan.items())
    }


async def _fallback_warehouse(uow: UnitOfWork, held: Sequence[Any]) -> str | None:
    if held:
        return str(sorted(r.warehouse_code for r in held)[0])
    active = [w for w in await inventory.list_warehouses(uow) if w.active]
    return active[0].code if active else None


async def allocate_order(uow: UnitOfWork, order_id: str) -> list[FulfilmentInfo]:
    """The order's fulfilments, created from its committed reservations if not there yet.

    Idempotent (unique per order and warehouse): calling it again, or concurrently, creates
    nothing more. 404 for an unknown order; 409 ``order_not_shippable`` for one that is not
    paid (or is cancelled).
    """
    existing = await fulfilments_for_order(uow, order_id)
    if existing:
        return existing
    order = await orders.get_order(uow, order_id)
    if order is None:
        raise not_found("Order", order_id)
    check_shippable(order)
    held = await inventory.list_reservations(
        uow, state="committed", owner=order.checkout_id, limit=10_000
    )
    sellers = {}
    for seller_id in {line.seller_id for line in order.lines} - {orders.HOUSE_SELLER}:
        seller = await marketplace.get_seller(uow, seller_id)
        if seller is not None and seller.warehouse_code is not None:
            sellers[seller_id] = seller.warehouse_code
    fallback = await _fallback_warehouse(
        uow, [r for r in held if r.warehouse_code not in sellers.values()]
    )
    plan = _plan_allocation(order, held, fallback, sellers)
    now = utcnow()
    for code, lines in plan.items():
        fulfilment_id = new_id("ful")
        made = await uow.changed(
            dialect_insert(uow, FULFILMENTS)
            .values(
                id=fulfilment_id,
                order_id=order_id,
                warehouse_code=code,
                status="pending",
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing()
        )
        if made != 1:
            continue  # a concurrent allocation made this one (with its items)
        await uow.execute(
            insert(ITEMS),
            [
                {
                    "id": new_id("fli"),
                    "fulfilment_id": fulfilment_id,
                    "order_id": order_id,
                    "order_line_id": line.id,
                    "variant_id": line.variant_id,
                    "quantity": units,
                    "quantity_claimed": 0,
                    "quantity_shipped": 0,
                }
                for line, units in lines
            ],
        )
    log.info("order %s allocated to %s", order_id, ", ".join(plan) or "nothing")
    return await fulfilments_for_order(uow, order_id)


def check_shippable(order: orders.OrderInfo) -> None:
    """Only a paid order (every order is, from birth) not cancelled nor past shipping."""
    if order.status == "cancelled":
        raise Problem(409, "order_cancelled", "The order was cancelled", status_now=order.status)
    if order.status not in orders.SHIPPABLE:
        raise Problem(
            409,
            "order_not_shippable",
            f"The order is {order.status}; there is nothing left to ship",
            status_now=order.status,
        )


async def cancel_fulfilments(uow: UnitOfWork, order_id: str) -> int:
    """Nothing of a cancelled order is to be picked any more; returns how many were stopped."""
    return await uow.changed(
        update(FULFILMENTS)
        .where(
            FULFILMENTS.c.order_id == order_id,
            FULFILMENTS.c.status.in_(("pending", "picked", "packed")),
        )
        .values(status="cancelled", updated_at=utcnow())
    )


# -- picking and packing ---------------------------------------------------------------------------


async def mark_fulfilment(
    uow: UnitOfWork,
    fulfilment_id: str,
    step: FulfilmentStep,
    *,
    actor: str,
    order_id: str | None = None,
) -> FulfilmentInfo:
    """Mark a fulfilment ``picked`` or ``packed`` (again: nothing changes). ``order_id``: the
    order it must belong to (404 otherwise). A paid order becomes ``fulfilling``.
    409 ``invalid_fulfilment_state`` when the fulfilment is past that step."""
    check_actor(actor)
    found = await get_fulfilment(uow, fulfilment_id)
    if found is None or (order_id is not None and found.order_id != order_id):
        raise not_found("Fulfilment", fulfilment_id)
    now = utcnow()
    stamp = {"picked_at": now} if step == "picked" else {"packed_at": now}
    moved = await uow.changed(
        update(FULFILMENTS)
        .where(FULFILMENTS.c.id == fulfilment_id, FULFILMENTS.c.status.in_(_SOURCES[step]))
        .values(status=step, updated_at=now, **stamp)
    )
    if not moved:
        if found.status == step:
            return found  # a retry: already there
        raise Problem(
            409,
            "invalid_fulfilment_state",
            f"The fulfilment is {found.status}; it cannot be marked {step}",
            status_now=found.status,
        )
    order = await orders.get_order(uow, found.order_id)
    if order is not None and order.status == "paid":
        # Work on the order has started in a warehouse.
        await orders.transition(uow, order.id, "fulfilling", actor=actor, expected_from={"paid"})
    after = await get_fulfilment(uow, fulfilment_id)
    assert after is not None
    return after


async def refresh_fulfilment_statuses(uow: UnitOfWork, fulfilment_ids: set[str]) -> None:
    """Shipped, partly shipped or delivered, from the items and their shipments."""
    for fulfilment_id in sorted(fulfilment_ids):
        found = await get_fulfilment(uow, fulfilment_id)
        if found is None or found.status == "cancelled":
            continue
        if found.units_shipped == 0:
            continue
        if found.units_shipped < found.units:
            status = "partially_shipped"
        else:
            s, i = SHIPMENTS.c, SHIPMENT_ITEMS.c
            open_ = await uow.scalar(
                select(func.count())
                .select_from(SHIPMENT_ITEMS.join(SHIPMENTS, s.id == i.shipment_id))
                .where(
                    i.fulfilment_item_id.in_([item.id for item in found.items]),
                    s.status != "delivered",
                )
            )
            status = "shipped" if open_ else "delivered"
        if status != found.status:
            await uow.execute(
                update(FULFILMENTS)
                .where(FULFILMENTS.c.id == fulfilment_id)
                .values(status=status, updated_at=utcnow())
            )
