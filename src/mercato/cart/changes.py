"""A shopper's changes to a cart: add a variant, set a line's quantity, remove a line, empty
the cart, take a changed price; and emptying a cart once its order is placed.

The line changes are single Core statements after the cart's row lock (see ``storage``);
adding is one upsert whose ``DO UPDATE … WHERE`` enforces the per-line maximum in the
database."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from sqlalchemy import delete, update

from mercato.cart.cache import CartCache, invalidate
from mercato.cart.common import (
    CartChange,
    CartLimits,
    CartOwner,
    LineOffer,
    check_quantity,
    line_not_found,
    offer_readers,
    out_of_stock,
)
from mercato.cart.models import cart_lines, carts
from mercato.cart.storage import (
    ADD_LINE,
    SET_LINE_QUANTITY,
    cart_from_row,
    line_from_row,
    load_lines,
    lock_cart,
    with_line,
)
from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.problems import Problem

# --- changing carts --------------------------------------------------------------------------


async def add_item(
    uow: UnitOfWork,
    owner: CartOwner,
    variant_id: str,
    quantity: int,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
    seller_id: str | None = None,
    offer_id: str | None = None,
    country: str | None = None,
) -> CartChange:
    """Add ``quantity`` of a variant (creating the cart on first add); an existing line grows.

    A line buys one offer: the house's (no ``seller_id`` nor ``offer_id``: the catalog's price
    and the pooled stock, as a shop without sellers always did), or a marketplace seller's
    (``offer_id``, or ``variant_id`` with ``seller_id``), at the offer's price and within the
    seller's stock. The same variant from two sellers is two lines.

    The stock check here is a fast pre-check: the real one is the reservation at checkout.
    Adding again refreshes the line's price seen, since the shopper has just seen that price.
    """
    check_quantity(quantity, limits)
    offer = None
    if offer_id is not None or seller_id is not None:
        offer = await _offer(uow, offer_id, variant_id or None, seller_id, country)
        variant_id = offer.variant_id
        if offer.seller_id is None:
            offer = None  # the house's offer: the line is a plain one
    variant = (await catalog.get_variants(uow, [variant_id])).get(variant_id)
    if variant is None:
        raise Problem(
            422,
            "unknown_variant",
            f"There is no variant {variant_id!r}",
            title="Unknown variant",
            errors=[{"field": "variant_id", "message": "unknown variant", "type": "unknown"}],
        )
    if not variant.active:
        raise Problem(
            422,
            "variant_unavailable",
            f"{variant.sku} is not for sale",
            title="Variant unavailable",
            variant_id=variant_id,
        )
    spread = (await inventory.stock_spreads(uow, [variant_id]))[variant_id]
    # Whether the units can reach the shopper is the cart view's flag and checkout's refusal:
    # a shopper may fill a cart before choosing where it goes.
    available = spread.total if offer is None else offer.available
    price = variant.price if offer is None else offer.price
    if available < quantity:
        raise out_of_stock(variant_id, variant.sku, max(available, 0), quantity)

    now = utcnow()
    row, created = await lock_cart(uow, owner, now, limits, create_currency=variant.currency)
    assert row is not None
    # A cart created just now has no lines yet; otherwise its lines are locked with it.
    lines = () if created else await load_lines(uow, row.id)
    line_seller = offer.seller_id if offer is not None else None
    has_line = any((x.variant_id, x.seller_id) == (variant_id, line_seller) for x in lines)
    if not has_line and len(lines) >= limits.max_lines:
        raise Problem(
            422,
            "cart_full",
            f"A cart holds at most {limits.max_lines} different items",
            title="Cart full",
            max_lines=limits.max_lines,
        )
    cart = cart_from_row(row)
    if cart.currency != variant.currency:
        if lines:
            raise Problem(
                422,
                "currency_mismatch",
                f"This cart is in {cart.currency}; {variant.sku} is priced in {variant.currency}",
                title="Currency mismatch",
            )
        await uow.execute(
            update(carts).where(carts.c.id == row.id).values(currency=variant.currency)
        )
        cart = replace(cart, currency=variant.currency)

    params = {
        "b_id": new_id("cl"),
        "b_cart": row.id,
        "b_variant": variant_id,
        "b_seller": line_seller or "",
        "b_quantity": quantity,
        "b_price": price,
        "b_currency": variant.currency,
        "b_now": now,
        "b_max": limits.max_line_quantity,
    }
    added = (await uow.execute(ADD_LINE[uow.dialect.name], params)).first()
    if added is None:
        raise Problem(
            422,
            "quantity_limit",
            f"A cart line holds at most {limits.max_line_quantity} units",
            title="Quantity limit",
            max_quantity=limits.max_line_quantity,
            errors=[
                {
                    "field": "quantity",
                    "message": f"the line would exceed {limits.max_line_quantity}",
                    "type": "quantity_limit",
                }
            ],
        )
    if added.quantity > available:
        raise out_of_stock(variant_id, variant.sku, max(available, 0), added.quantity)
    invalidate(uow, cache, row.id)
    return CartChange(
        row.id,
        created,
        cart=replace(cart, lines=with_line(lines, line_from_row(added))),
        variants={variant_id: variant},
        stock={variant_id: spread} if offer is None else {},
    )


async def _offer(
    uow: UnitOfWork,
    offer_id: str | None,
    variant_id: str | None,
    seller_id: str | None,
    country: str | None,
) -> LineOffer:
    if not offer_readers:
        raise Problem(
            422,
            "offers_not_supported",
            "This shop sells no other seller's offers",
            errors=[{"field": "offer_id", "message": "unknown offer", "type": "unknown"}],
        )
    return await offer_readers[0](uow, offer_id, variant_id, seller_id, country)


async def set_quantity(
    uow: UnitOfWork,
    owner: CartOwner,
    line_id: str,
    quantity: int,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange:
    """Set a line's quantity (1…max). Raising it needs the variant on sale and in stock;
    lowering it is always allowed."""
    check_quantity(quantity, limits)
    now = utcnow()
    row, _ = await lock_cart(uow, owner, now, limits)
    if row is None:
        raise line_not_found(line_id)
    lines = await load_lines(uow, row.id)
    line = next((x for x in lines if x.id == line_id), None)
    if line is None:
        raise line_not_found(line_id)
    variants: dict[str, catalog.VariantInfo] = {}
    stock: dict[str, inventory.StockSpread] = {}
    if quantity > line.quantity and line.seller_id is not None:
        offer = await _offer(uow, None, line.variant_id, line.seller_id, None)
        if quantity > offer.available:
            raise out_of_stock(line.variant_id, line.variant_id, max(offer.available, 0), quantity)
    elif quantity > line.quantity:
        variant = (await catalog.get_variants(uow, [line.variant_id])).get(line.variant_id)
        if variant is None or not variant.active:
            raise Problem(
                422,
                "variant_unavailable",
                "This item is no longer for sale; it can only be removed or reduced",
                title="Variant unavailable",
                variant_id=line.variant_id,
            )
        spread = (await inventory.stock_spreads(uow, [line.variant_id]))[line.variant_id]
        if quantity > spread.total:
            raise out_of_stock(line.variant_id, variant.sku, max(spread.total, 0), quantity)
        variants[line.variant_id] = variant
        stock[line.variant_id] = spread
    params = {"b_line": line_id, "b_cart": row.id, "b_quantity": quantity, "b_now": now}
    await uow.execute(SET_LINE_QUANTITY, params)
    invalidate(uow, cache, row.id)
    changed = replace(line, quantity=quantity, updated_at=now)
    return CartChange(
        row.id,
        cart=cart_from_row(row, with_line(lines, changed)),
        variants=variants,
        stock=stock,
    )


async def remove_item(
    uow: UnitOfWork,
    owner: CartOwner,
    line_id: str,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange:
    row, _ = await lock_cart(uow, owner, utcnow(), limits)
    if row is None:
        raise line_not_found(line_id)
    removed = await uow.changed(
        delete(cart_lines).where(cart_lines.c.id == line_id, cart_lines.c.cart_id == row.id)
    )
    if removed == 0:
        raise line_not_found(line_id)
    invalidate(uow, cache, row.id)
    return CartChange(row.id)


async def empty_cart(
    uow: UnitOfWork,
    owner: CartOwner,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange | None:
    """Remove every line of the owner's cart (the cart itself stays); None when there is no
    cart."""
    row, _ = await lock_cart(uow, owner, utcnow(), limits)
    if row is None:
        return None
    await uow.execute(delete(cart_lines).where(cart_lines.c.cart_id == row.id))
    invalidate(uow, cache, row.id)
    return CartChange(str(row.id))


async def accept_price(
    uow: UnitOfWork,
    owner: CartOwner,
    line_id: str,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange:
    """Take the current price of a line whose price changed: the line is added again at the
    price shown now (adding records the price as seen), with the same quantity."""
    row, _ = await lock_cart(uow, owner, utcnow(), limits)
    line = (
        next((x for x in await load_lines(uow, row.id) if x.id == line_id), None) if row else None
    )
    if line is None:
        raise line_not_found(line_id)
    await remove_item(uow, owner, line_id, limits=limits, cache=cache)
    return await add_item(
        uow,
        owner,
        line.variant_id,
        line.quantity,
        limits=limits,
        cache=cache,
        seller_id=line.seller_id,
    )


@dataclass(frozen=True, slots=True)
class Edit:
    """One change a shopper asks of their cart, as the cart API and the shop's forms both
    hand it over (see :func:`edit_cart`)."""

    kind: Literal["add", "set_quantity", "remove", "empty", "accept_price"]
    variant_id: str = ""
    line_id: str = ""
    quantity: int = 0
    seller_id: str | None = None
    offer_id: str | None = None
    country: str | None = None

    @classmethod
    def add(
        cls,
        variant_id: str,
        quantity: int,
        *,
        seller_id: str | None = None,
        offer_id: str | None = None,
        country: str | None = None,
    ) -> Edit:
        return cls(
            "add",
            variant_id=variant_id,
            quantity=quantity,
            seller_id=seller_id,
            offer_id=offer_id,
            country=country,
        )

    @classmethod
    def set_quantity(cls, line_id: str, quantity: int) -> Edit:
        return cls("set_quantity", line_id=line_id, quantity=quantity)

    @classmethod
    def remove(cls, line_id: str) -> Edit:
        return cls("remove", line_id=line_id)

    @classmethod
    def empty(cls) -> Edit:
        return cls("empty")

    @classmethod
    def accept_price(cls, line_id: str) -> Edit:
        return cls("accept_price", line_id=line_id)


async def edit_cart(
    uow: UnitOfWork,
    owner: CartOwner,
    edit: Edit,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange | None:
    """Make one shopper's change to the owner's cart; None only when emptying a cart that does
    not exist."""
    if edit.kind == "add":
        return await add_item(
            uow,
            owner,
            edit.variant_id,
            edit.quantity,
            limits=limits,
            cache=cache,
            seller_id=edit.seller_id,
            offer_id=edit.offer_id,
            country=edit.country,
        )
    if edit.kind == "set_quantity":
        return await set_quantity(
            uow, owner, edit.line_id, edit.quantity, limits=limits, cache=cache
        )
    if edit.kind == "remove":
        return await remove_item(uow, owner, edit.line_id, limits=limits, cache=cache)
    if edit.kind == "accept_price":
        return await accept_price(uow, owner, edit.line_id, limits=limits, cache=cache)
    return await empty_cart(uow, owner, limits=limits, cache=cache)


async def clear_cart(uow: UnitOfWork, cart_id: str, *, cache: CartCache | None = None) -> int:
    """Remove every line of a cart by id (after an order is placed); how many were removed."""
    await uow.execute(
        update(carts)
        .where(carts.c.id == cart_id)
        .values(version=carts.c.version + 1, updated_at=utcnow())
    )
    removed = await uow.changed(delete(cart_lines).where(cart_lines.c.cart_id == cart_id))
    invalidate(uow, cache, cart_id)
    return removed
