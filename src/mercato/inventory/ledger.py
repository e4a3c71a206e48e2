"""The stock ledger: one movement row per change of a stock row, one ``StockChanged`` event per
affected variant, and the check that every stock row agrees with its ledger and its
reservations."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, or_, select, union

from mercato import events
from mercato.db import UnitOfWork
from mercato.ids import new_id
from mercato.inventory.common import (
    MOVEMENTS,
    RESERVATIONS,
    STOCK,
    STOCK_CHANGED,
    availability,
)

# Prebuilt: building a statement object costs about as much as sending it.
_INSERT_MOVEMENTS = insert(MOVEMENTS)


@dataclass(frozen=True, slots=True)
class LedgerDifference:
    """A stock row whose numbers disagree with its ledger or its reservations.

    ``expected_on_hand`` = received + adjustments + restocks - sold (commits), from the ledger;
    ``expected_reserved`` = sum of the row's active reservations;
    ``ledger_reserved`` = reserves - releases - expiries - commits, from the ledger.
    """

    variant_id: str
    warehouse_id: str
    on_hand: int
    expected_on_hand: int
    reserved: int
    expected_reserved: int
    ledger_reserved: int

    @property
    def problems(self) -> list[str]:
        found = []
        if self.on_hand != self.expected_on_hand:
            found.append(f"on_hand {self.on_hand} but ledger says {self.expected_on_hand}")
        if self.reserved != self.expected_reserved:
            found.append(
                f"reserved {self.reserved} but active reservations hold {self.expected_reserved}"
            )
        if self.reserved != self.ledger_reserved:
            found.append(f"reserved {self.reserved} but ledger says {self.ledger_reserved}")
        return found


LEDGER_RULE = (
    "for every stock row: received + adjustments + restocks = on_hand + sold (commits), "
    "reserved = sum of active reservations = reserves - releases - expiries - commits"
)


def movement(
    variant_id: str,
    warehouse_id: str,
    kind: str,
    quantity: int,
    now: datetime,
    *,
    reason: str | None = None,
    reference: str | None = None,
) -> dict[str, Any]:
    """A ledger row: ``kind`` is receive, adjust, restock, reserve, release, expire or commit."""
    return {
        "id": new_id("mov"),
        "variant_id": variant_id,
        "warehouse_id": warehouse_id,
        "kind": kind,
        "quantity": quantity,
        "reason": reason,
        "reference": reference,
        "created_at": now,
    }


async def write_movements(uow: UnitOfWork, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        await uow.execute(_INSERT_MOVEMENTS, list(rows))


async def publish_stock_changed(uow: UnitOfWork, totals: Mapping[str, int]) -> None:
    """One ``StockChanged`` per variant. ``available`` is the figure this transaction saw; a
    consumer that needs the exact current figure re-reads :func:`availability`."""
    await events.publish_many(
        uow,
        (
            (STOCK_CHANGED, v, {"variant_id": v, "available": a, "in_stock": a > 0})
            for v, a in sorted(totals.items())
        ),
    )


async def publish_after_change(uow: UnitOfWork, variant_ids: Iterable[str]) -> None:
    await publish_stock_changed(uow, await availability(uow, set(variant_ids)))


# --------------------------------------------------------------------------------------------
# The ledger check


async def check_ledger(
    uow: UnitOfWork, variant_ids: Collection[str] | None = None
) -> list[LedgerDifference]:
    """Every stock row (and every ledger or reservation key without one) whose figures disagree:

    * on_hand  = received + adjustments + restocks - sold (commits), summed from the ledger;
    * reserved = the sum of the row's active reservations;
    * reserved = reserves - releases - expiries - commits, summed from the ledger.

    One statement, so PostgreSQL answers from one snapshot even while stock moves.
    """
    m, r = MOVEMENTS.c, RESERVATIONS.c
    signed_on_hand = case(
        (m.kind.in_(("receive", "adjust", "restock")), m.quantity),
        (m.kind == "commit", -m.quantity),
        else_=0,
    )
    signed_reserved = case(
        (m.kind == "reserve", m.quantity),
        (m.kind.in_(("release", "expire", "commit")), -m.quantity),
        else_=0,
    )
    ledger_q = select(
        m.variant_id,
        m.warehouse_id,
        func.sum(signed_on_hand).label("on_hand"),
        func.sum(signed_reserved).label("reserved"),
    )
    held_q = select(r.variant_id, r.warehouse_id, func.sum(r.quantity).label("reserved")).where(
        r.state == "active"
    )
    stock_keys = select(STOCK.c.variant_id, STOCK.c.warehouse_id)
    if variant_ids is not None:
        chosen = sorted(set(variant_ids))
        ledger_q = ledger_q.where(m.variant_id.in_(chosen))
        held_q = held_q.where(r.variant_id.in_(chosen))
        stock_keys = stock_keys.where(STOCK.c.variant_id.in_(chosen))
    ledger = ledger_q.group_by(m.variant_id, m.warehouse_id).subquery("ledger")
    held = held_q.group_by(r.variant_id, r.warehouse_id).subquery("held")
    keys = union(
        stock_keys,
        select(ledger.c.variant_id, ledger.c.warehouse_id),
        select(held.c.variant_id, held.c.warehouse_id),
    ).subquery("keys")

    def joined(sub: Any) -> Any:
        return and_(
            sub.c.variant_id == keys.c.variant_id, sub.c.warehouse_id == keys.c.warehouse_id
        )

    on_hand = func.coalesce(STOCK.c.on_hand, 0)
    reserved = func.coalesce(STOCK.c.reserved, 0)
    expected_on_hand = func.coalesce(ledger.c.on_hand, 0)
    ledger_reserved = func.coalesce(ledger.c.reserved, 0)
    expected_reserved = func.coalesce(held.c.reserved, 0)
    query = (
        select(
            keys.c.variant_id,
            keys.c.warehouse_id,
            on_hand.label("on_hand"),
            expected_on_hand.label("expected_on_hand"),
            reserved.label("reserved"),
            expected_reserved.label("expected_reserved"),
            ledger_reserved.label("ledger_reserved"),
        )
        .select_from(keys)
        .outerjoin(STOCK, joined(STOCK))
        .outerjoin(ledger, joined(ledger))
        .outerjoin(held, joined(held))
        .where(
            or_(
                on_hand != expected_on_hand,
                reserved != expected_reserved,
                reserved != ledger_reserved,
            )
        )
        .order_by(keys.c.variant_id, keys.c.warehouse_id)
    )
    rows = await uow.execute(query)
    return [
        LedgerDifference(
            variant_id=row.variant_id,
            warehouse_id=row.warehouse_id,
            on_hand=int(row.on_hand),
            expected_on_hand=int(row.expected_on_hand),
            reserved=int(row.reserved),
            expected_reserved=int(row.expected_reserved),
            ledger_reserved=int(row.ledger_reserved),
        )
        for row in rows
    ]


async def count_stock_rows(uow: UnitOfWork) -> int:
    return int((await uow.execute(select(func.count()).select_from(STOCK))).scalar_one())
