"""Cart rows: reading a cart with its lines (one statement), and locking or creating the cart a
change is about.

Every change to a cart first bumps the cart row's ``version`` with one ``UPDATE … RETURNING``:
that takes the cart's row lock on PostgreSQL (SQLite serialises writers with ``BEGIN IMMEDIATE``),
so concurrent edits of one cart queue behind each other and every rule checked after it (line
count, quantity bounds) holds."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, Table, bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from mercato.cart.cache import CartCache
from mercato.cart.common import (
    CartInfo,
    CartLimits,
    CartLineInfo,
    CartOwner,
    invalid_cart_token,
)
from mercato.cart.models import cart_lines, carts
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id

# --- reading ---------------------------------------------------------------------------------


# Carts are read and changed on every add-to-cart and checkout: prebuilt Core statements, so a
# call binds values instead of building (and cache-keying) a statement.
_LINE_ORDER = (cart_lines.c.added_at, cart_lines.c.id)
_LINES_OF_CART = (
    select(cart_lines).where(cart_lines.c.cart_id == bindparam("b_cart")).order_by(*_LINE_ORDER)
)
_CUSTOMER_CART = select(carts).where(carts.c.user_id == bindparam("b_user"))
LIVE_GUEST_CART = (carts.c.id == bindparam("b_cart"), carts.c.user_id.is_(None))
_GUEST_CART = select(carts).where(*LIVE_GUEST_CART, carts.c.expires_at > bindparam("b_now"))
# A cart and its lines in one round trip: one row per line (one row of NULL line columns for a
# cart without lines), lines in display order.
_CART_AND_LINES = (
    select(
        *carts.c,
        cart_lines.c.id.label("line_id"),
        cart_lines.c.variant_id,
        cart_lines.c.seller_id,
        cart_lines.c.quantity,
        cart_lines.c.unit_price_seen,
        cart_lines.c.currency.label("line_currency"),
        cart_lines.c.added_at,
        cart_lines.c.updated_at.label("line_updated_at"),
    )
    .select_from(carts.outerjoin(cart_lines, cart_lines.c.cart_id == carts.c.id))
    .order_by(*_LINE_ORDER)
)
_CART_AND_LINES_BY_ID = _CART_AND_LINES.where(carts.c.id == bindparam("b_cart"))
_CUSTOMER_CART_AND_LINES = _CART_AND_LINES.where(carts.c.user_id == bindparam("b_user"))
_GUEST_CART_AND_LINES = _CART_AND_LINES.where(
    *LIVE_GUEST_CART, carts.c.expires_at > bindparam("b_now")
)


def cart_from_row(row: Row[Any], lines: tuple[CartLineInfo, ...] = ()) -> CartInfo:
    return CartInfo(
        id=row.id,
        user_id=row.user_id,
        currency=row.currency,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        expires_at=row.expires_at,
        lines=lines,
    )


def line_from_row(r: Row[Any]) -> CartLineInfo:
    return CartLineInfo(
        id=r.id,
        cart_id=r.cart_id,
        variant_id=r.variant_id,
        quantity=r.quantity,
        unit_price_seen=r.unit_price_seen,
        currency=r.currency,
        added_at=r.added_at,
        updated_at=r.updated_at,
        seller_id=r.seller_id or None,
    )


def cart_from_joined_rows(rows: Sequence[Row[*tuple[Any, ...]]]) -> CartInfo | None:
    """The cart of ``_CART_AND_LINES`` rows (all of one cart), or None when there are none."""
    if not rows:
        return None
    first = rows[0]
    lines = tuple(
        CartLineInfo(
            id=r.line_id,
            cart_id=first.id,
            variant_id=r.variant_id,
            quantity=r.quantity,
            unit_price_seen=r.unit_price_seen,
            currency=r.line_currency,
            added_at=r.added_at,
            updated_at=r.line_updated_at,
            seller_id=r.seller_id or None,
        )
        for r in rows
        if r.line_id is not None
    )
    return cart_from_row(first, lines)


def _owner_query(
    owner: CartOwner, now: datetime, customer: Select[Any], guest: Select[Any]
) -> tuple[Select[Any], dict[str, Any]] | None:
    """The statement (``customer`` or ``guest``) and parameters that find the owner's cart."""
    if owner.user_id is not None:
        return customer, {"b_user": owner.user_id}
    if owner.guest_cart_id is not None:
        return guest, {"b_cart": owner.guest_cart_id, "b_now": now}
    return None


async def find_cart_row(uow: UnitOfWork, owner: CartOwner, now: datetime) -> Row[Any] | None:
    query = _owner_query(owner, now, _CUSTOMER_CART, _GUEST_CART)
    if query is None:
        return None
    row: Row[Any] | None = (await uow.execute(*query)).first()
    return row


async def find_cart(uow: UnitOfWork, owner: CartOwner, now: datetime) -> CartInfo | None:
    """The owner's cart with its lines, in one statement."""
    query = _owner_query(owner, now, _CUSTOMER_CART_AND_LINES, _GUEST_CART_AND_LINES)
    if query is None:
        return None
    return cart_from_joined_rows((await uow.execute(*query)).all())


async def load_lines(uow: UnitOfWork, cart_id: str) -> tuple[CartLineInfo, ...]:
    rows = await uow.execute(_LINES_OF_CART, {"b_cart": cart_id})
    return tuple(line_from_row(r) for r in rows)


async def get_cart_for(
    uow: UnitOfWork, user_id: str | None, guest_cart_id: str | None
) -> CartInfo | None:
    """The customer's cart (when ``user_id`` is given) or the live guest cart, with its lines,
    straight from the database; ``None`` when there is none."""
    return await find_cart(uow, CartOwner(user_id, guest_cart_id), utcnow())


async def get_cart(uow: UnitOfWork, cart_id: str) -> CartInfo | None:
    """A cart by id with its lines (no ownership or expiry check)."""
    rows = (await uow.execute(_CART_AND_LINES_BY_ID, {"b_cart": cart_id})).all()
    return cart_from_joined_rows(rows)


async def load_cart(
    uow: UnitOfWork, owner: CartOwner, *, cache: CartCache | None = None
) -> CartInfo | None:
    """The caller's cart for viewing, lines from Redis when a current copy is there.

    A guest token whose cart is gone (expired, merged, never existed) is ``invalid_cart_token``.
    """
    if cache is None:
        cart = await find_cart(uow, owner, utcnow())
        if cart is None and owner.user_id is None and owner.guest_cart_id is not None:
            raise invalid_cart_token()
        return cart
    row = await find_cart_row(uow, owner, utcnow())
    if row is None:
        if owner.user_id is None and owner.guest_cart_id is not None:
            raise invalid_cart_token()
        return None
    lines = await cache.get(row.id, row.version)
    if lines is None:
        lines = await load_lines(uow, row.id)
        await cache.put(row.id, row.version, lines)
    return cart_from_row(row, lines)


async def cart_lines_for_checkout(uow: UnitOfWork, cart_id: str) -> list[CartLineInfo]:
    """The cart's lines from the database (never the cache), oldest first."""
    return list(await load_lines(uow, cart_id))


# --- locking and creating carts --------------------------------------------------------------


def dialect_insert(uow: UnitOfWork, table: Any) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT (both have ``ON CONFLICT``)."""
    if uow.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


_BUMP = update(carts).values(version=carts.c.version + 1, updated_at=bindparam("b_now"))
_BUMP_CUSTOMER = _BUMP.where(carts.c.user_id == bindparam("b_user")).returning(*carts.c)
_BUMP_GUEST = (
    _BUMP.where(*LIVE_GUEST_CART, carts.c.expires_at > bindparam("b_now"))
    .values(expires_at=bindparam("b_expires"))
    .returning(*carts.c)
)


async def bump(
    uow: UnitOfWork, owner: CartOwner, now: datetime, limits: CartLimits
) -> Row[Any] | None:
    """Bump the version of the owner's cart (taking its row lock); the updated row or None.

    A guest cart's expiry is pushed out; an expired guest cart is not touched (it is gone)."""
    if owner.user_id is not None:
        result = await uow.execute(_BUMP_CUSTOMER, {"b_user": owner.user_id, "b_now": now})
    elif owner.guest_cart_id is not None:
        expires = now + timedelta(seconds=limits.guest_ttl_seconds)
        params = {"b_cart": owner.guest_cart_id, "b_now": now, "b_expires": expires}
        result = await uow.execute(_BUMP_GUEST, params)
    else:
        return None
    return result.first()


async def lock_cart(
    uow: UnitOfWork,
    owner: CartOwner,
    now: datetime,
    limits: CartLimits,
    *,
    create_currency: str | None = None,
) -> tuple[Row[Any] | None, bool]:
    """Lock the owner's cart for a change, creating it when ``create_currency`` is given.

    Returns (row, created); a guest token whose cart is gone raises ``invalid_cart_token``."""
    row = await bump(uow, owner, now, limits)
    if row is not None:
        return row, False
    if owner.user_id is None and owner.guest_cart_id is not None:
        raise invalid_cart_token()
    if create_currency is None:
        return None, False
    values = {
        "id": new_id("crt"),
        "user_id": owner.user_id,
        "currency": create_currency,
        "created_at": now,
        "updated_at": now,
        "version": 1,
        "expires_at": None
        if owner.user_id is not None
        else now + timedelta(seconds=limits.guest_ttl_seconds),
    }
    if owner.user_id is None:
        created = await uow.execute(dialect_insert(uow, carts).values(values).returning(*carts.c))
        return created.one(), True
    # Two devices of one customer may create the cart at once: one insert wins, both lock it.
    ins = (
        dialect_insert(uow, carts)
        .values(values)
        .on_conflict_do_nothing(index_elements=[carts.c.user_id])
    )
    inserted = await uow.changed(ins) == 1
    row = await bump(uow, owner, now, limits)
    assert row is not None
    return row, inserted


def _add_line_statement(insert: Callable[[Table], Any]) -> Any:
    """Insert a line, or add to the variant's line unless that passes ``b_max``; RETURNING the
    line (no row when the maximum stopped it)."""
    ins = insert(cart_lines).values(
        id=bindparam("b_id"),
        cart_id=bindparam("b_cart"),
        variant_id=bindparam("b_variant"),
        seller_id=bindparam("b_seller"),
        quantity=bindparam("b_quantity"),
        unit_price_seen=bindparam("b_price"),
        currency=bindparam("b_currency"),
        added_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
    total = cart_lines.c.quantity + ins.excluded.quantity
    return ins.on_conflict_do_update(
        index_elements=[cart_lines.c.cart_id, cart_lines.c.variant_id, cart_lines.c.seller_id],
        set_={
            "quantity": total,
            "unit_price_seen": ins.excluded.unit_price_seen,
            "currency": ins.excluded.currency,
            "updated_at": ins.excluded.updated_at,
        },
        # The bound lives in the statement: no add can push a line past the maximum.
        where=total <= bindparam("b_max"),
    ).returning(*cart_lines.c)


ADD_LINE = {
    "postgresql": _add_line_statement(postgresql.insert),
    "sqlite": _add_line_statement(sqlite.insert),
}
SET_LINE_QUANTITY = (
    update(cart_lines)
    .where(cart_lines.c.id == bindparam("b_line"), cart_lines.c.cart_id == bindparam("b_cart"))
    .values(quantity=bindparam("b_quantity"), updated_at=bindparam("b_now"))
)


def with_line(lines: tuple[CartLineInfo, ...], line: CartLineInfo) -> tuple[CartLineInfo, ...]:
    """``lines`` (in display order) with ``line`` in place of its offer's line (same variant and
    seller), or inserted where the display order (added, then id) puts it."""
    if any(x.id == line.id for x in lines):
        return tuple(line if x.id == line.id else x for x in lines)
    key = (line.added_at, line.id)
    at = next((i for i, x in enumerate(lines) if (x.added_at, x.id) > key), len(lines))
    return (*lines[:at], line, *lines[at:])


async def line_stats(uow: UnitOfWork, cart_id: str, variant_id: str) -> tuple[int, bool]:
    """(number of lines, whether the variant already has one)."""
    has_variant = func.coalesce(
        func.sum(case((cart_lines.c.variant_id == variant_id, 1), else_=0)), 0
    )
    row = (
        await uow.execute(select(func.count(), has_variant).where(cart_lines.c.cart_id == cart_id))
    ).one()
    return int(row[0]), int(row[1]) > 0
