"""Long-lived holds sold a few units at a time: a flash sale sets its allocation aside with
:func:`~mercato.inventory.reserve.reserve` (owner = the sale, expiring after the sale ends) and
each purchase sells units out of that hold, the rest going back with
:func:`~mercato.inventory.reserve.release` when the sale ends.

Selling part of a hold keeps the ledger's rule: the reservation's quantity falls by what was
sold, the stock row's ``on_hand`` and ``reserved`` fall together, and a ``commit`` movement of
that many units references the reservation. A reservation sold to its last unit becomes
``committed``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.inventory.common import RESERVATIONS, STOCK, check_quantity
from mercato.inventory.ledger import movement, write_movements
from mercato.problems import Problem

_HELD = (
    select(RESERVATIONS.c.id, RESERVATIONS.c.warehouse_id, RESERVATIONS.c.quantity)
    .where(
        RESERVATIONS.c.owner == bindparam("owner"),
        RESERVATIONS.c.variant_id == bindparam("variant"),
        RESERVATIONS.c.state == "active",
    )
    .order_by(RESERVATIONS.c.quantity.desc(), RESERVATIONS.c.warehouse_id)
    .with_for_update()
)
_SHRINK = (
    update(RESERVATIONS)
    .where(
        RESERVATIONS.c.id == bindparam("rid"),
        RESERVATIONS.c.state == "active",
        RESERVATIONS.c.quantity > bindparam("q"),
    )
    .values(quantity=RESERVATIONS.c.quantity - bindparam("q"), updated_at=bindparam("now"))
)
_USE_UP = (
    update(RESERVATIONS)
    .where(
        RESERVATIONS.c.id == bindparam("rid"),
        RESERVATIONS.c.state == "active",
        RESERVATIONS.c.quantity == bindparam("q"),
    )
    .values(state="committed", updated_at=bindparam("now"))
)
_SELL = (
    update(STOCK)
    .where(
        STOCK.c.variant_id == bindparam("v"),
        STOCK.c.warehouse_id == bindparam("w"),
        STOCK.c.reserved >= bindparam("q"),
    )
    .values(
        on_hand=STOCK.c.on_hand - bindparam("q"),
        reserved=STOCK.c.reserved - bindparam("q"),
        version=STOCK.c.version + 1,
        updated_at=bindparam("now"),
    )
)


@dataclass(frozen=True, slots=True)
class SoldFromHold:
    reservation_id: str
    variant_id: str
    warehouse_id: str
    quantity: int


def hold_too_small(owner: str, variant_id: str, wanted: int, held: int) -> Problem:
    return Problem(
        409,
        "hold_exhausted",
        f"{owner!r} holds {held} unit(s) of {variant_id}, {wanted} wanted",
        owner=owner,
        variant_id=variant_id,
        available=held,
    )


async def sell_from_hold(
    uow: UnitOfWork, owner: str, variant_id: str, quantity: int, *, reason: str | None = None
) -> list[SoldFromHold]:
    """Sell ``quantity`` units of ``variant_id`` out of ``owner``'s active holds (the fullest
    first), leaving the rest held. 409 ``hold_exhausted`` (nothing sold) when the holds are
    smaller. Locks the reservation rows, then the stock rows, as every inventory change does."""
    check_quantity("quantity", quantity)
    held = (await uow.execute(_HELD, {"owner": owner, "variant": variant_id})).all()
    total = sum(r.quantity for r in held)
    if total < quantity:
        raise hold_too_small(owner, variant_id, quantity, total)
    now = utcnow()
    sold: list[SoldFromHold] = []
    left = quantity
    for row in held:
        take = min(left, row.quantity)
        params = {"rid": row.id, "q": take, "now": now}
        changed = await uow.changed(_USE_UP if take == row.quantity else _SHRINK, params)
        if changed != 1:  # pragma: no cover - the rows are locked by the read above
            raise hold_too_small(owner, variant_id, quantity, total)
        sold.append(SoldFromHold(row.id, variant_id, row.warehouse_id, take))
        left -= take
        if left == 0:
            break
    await write_movements(
        uow,
        [
            movement(
                s.variant_id,
                s.warehouse_id,
                "commit",
                s.quantity,
                now,
                reason=reason,
                reference=s.reservation_id,
            )
            for s in sold
        ],
    )
    for s in sorted(sold, key=lambda s: s.warehouse_id):
        params = {"v": s.variant_id, "w": s.warehouse_id, "q": s.quantity, "now": now}
        await uow.execute(_SELL, params)
    return sold
