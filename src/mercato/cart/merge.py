"""Carts meeting and ending: a guest cart folded into the customer's at login, and abandoned
guest carts expiring."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, delete, select, update

from mercato.cart.cache import CartCache, invalidate
from mercato.cart.common import CartLimits, CartOwner
from mercato.cart.models import cart_lines, carts
from mercato.cart.storage import (
    bump,
    dialect_insert,
    find_cart_row,
    line_stats,
    load_lines,
    lock_cart,
)
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id


async def merge_carts(
    uow: UnitOfWork,
    guest_cart_id: str,
    user_id: str,
    *,
    limits: CartLimits | None = None,
    cache: CartCache | None = None,
) -> str | None:
    """Fold a guest cart into the customer's cart and delete the guest cart.

    The union of lines; for a variant in both, the higher quantity (capped at the line maximum)
    and the customer line's price seen. Merging a cart that is gone does nothing, so a repeated
    login with a stale token is harmless. The line-count limit is not applied here: dropping a
    shopper's lines silently would be worse than a cart over the limit (which only blocks adding
    new variants). Returns the customer's cart id, or None.
    """
    limits = limits or CartLimits()
    now = utcnow()
    # Lock the guest cart first (then the customer's; nothing locks in the other order) so a
    # concurrent guest edit lands either before the merge reads the lines or not at all.
    guest = await bump(uow, CartOwner(guest_cart_id=guest_cart_id), now, limits)
    if guest is None:
        return None
    guest_lines = await load_lines(uow, guest_cart_id)
    if not guest_lines:
        await _delete_guest(uow, guest_cart_id)
        invalidate(uow, cache, guest_cart_id)
        existing = await find_cart_row(uow, CartOwner(user_id=user_id), now)
        return str(existing.id) if existing is not None else None

    row, _ = await lock_cart(
        uow, CartOwner(user_id=user_id), now, limits, create_currency=guest.currency
    )
    assert row is not None
    line_count, _ = await line_stats(uow, row.id, guest_lines[0].variant_id)
    if line_count == 0 and row.currency != guest.currency:
        await uow.execute(update(carts).where(carts.c.id == row.id).values(currency=guest.currency))
    ins = dialect_insert(uow, cart_lines)
    higher = case(
        (ins.excluded.quantity > cart_lines.c.quantity, ins.excluded.quantity),
        else_=cart_lines.c.quantity,
    )
    upsert = ins.on_conflict_do_update(
        index_elements=[cart_lines.c.cart_id, cart_lines.c.variant_id, cart_lines.c.seller_id],
        set_={"quantity": higher, "updated_at": ins.excluded.updated_at},
    )
    await uow.execute(
        upsert,
        [
            {
                "id": new_id("cl"),
                "cart_id": row.id,
                "variant_id": line.variant_id,
                "seller_id": line.seller_id or "",
                "quantity": min(line.quantity, limits.max_line_quantity),
                "unit_price_seen": line.unit_price_seen,
                "currency": line.currency,
                "added_at": line.added_at,
                "updated_at": now,
            }
            for line in guest_lines
        ],
    )
    await _delete_guest(uow, guest_cart_id)
    invalidate(uow, cache, guest_cart_id, row.id)
    return str(row.id)


async def _delete_guest(uow: UnitOfWork, cart_id: str) -> None:
    await uow.execute(delete(cart_lines).where(cart_lines.c.cart_id == cart_id))
    await uow.execute(delete(carts).where(carts.c.id == cart_id, carts.c.user_id.is_(None)))


async def expire_guest_carts(
    uow: UnitOfWork, *, now: datetime | None = None, batch: int = 500
) -> list[str]:
    """Delete up to ``batch`` guest carts whose expiry has passed (lines go with them);
    the ids deleted. Customer carts never expire."""
    now = now or utcnow()
    expired = (
        select(carts.c.id)
        .where(carts.c.user_id.is_(None), carts.c.expires_at <= now)
        .order_by(carts.c.expires_at)
        .limit(batch)
    )
    ids = list((await uow.execute(expired)).scalars())
    if not ids:
        return []
    # Re-check the expiry in the DELETE: a cart touched since the SELECT has a new expiry.
    result = await uow.execute(
        delete(carts)
        .where(carts.c.id.in_(ids), carts.c.user_id.is_(None), carts.c.expires_at <= now)
        .returning(carts.c.id)
    )
    return [str(i) for i in result.scalars()]
