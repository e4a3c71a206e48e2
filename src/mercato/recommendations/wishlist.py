"""The wishlist: products (or one variant of one) a signed-in customer saved, listed with their
current price and stock for the shopper's destination, and the back-in-stock mail.

One entry per (customer, product): saving again keeps the one entry (and the variant named
last), so saving is idempotent. At most :data:`MAX_ENTRIES` per customer.

**Back in stock.** An entry watches its variant, or, saved without one, the whole product (it
is sold out when no variant of it is available, and back when any is). Each ``StockChanged``
reaches :func:`restock_check` through the outbox: an entry whose item is now sold out gets
``sold_out_at``; one that was sold out and is available again is cleared by a conditional
``UPDATE … WHERE sold_out_at IS NOT NULL`` whose returned rows each publish one
``WishlistItemBackInStock`` (the notifications module mails it). Of two deliveries of the same
event, in parallel or one after the other, only the first clears the row, so the customer is
told once per return to stock; selling out again arms the entry again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mercato import events
from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.inventory import service as inventory
from mercato.problems import Problem, not_found, validation_problem
from mercato.recommendations.models import WishlistEntry

WISHLIST = cast(Table, WishlistEntry.__table__)
MAX_ENTRIES = 500
BACK_IN_STOCK = "WishlistItemBackInStock"


@dataclass(frozen=True, slots=True)
class SavedEntry:
    """What saving answered: the entry as stored."""

    product_id: str
    variant_id: str | None
    saved_at: datetime


@dataclass(frozen=True, slots=True)
class WishlistItem:
    """A saved entry as the shopper's list shows it. ``on_sale`` is false for a product since
    archived (kept on the list, with its last title, until removed); the price is the saved
    variant's, else the product's lowest; ``cart_variant_id`` is what "Add to cart" adds: the
    saved variant, else the first variant in stock for the destination (None: nothing to add)."""

    product_id: str
    variant_id: str | None
    saved_at: datetime
    title: str
    slug: str | None
    image: str | None
    variant_title: str | None
    currency: str | None
    price: int | None
    on_sale: bool
    in_stock: bool
    available_elsewhere: bool
    cart_variant_id: str | None


@dataclass(frozen=True, slots=True)
class BackInStock:
    """What the back-in-stock mail names: the product, the saved variant, today's price."""

    product_id: str
    title: str
    variant_title: str | None
    currency: str
    price: int | None


def wishlist_full() -> Problem:
    return Problem(
        409,
        "wishlist_full",
        f"A wishlist holds at most {MAX_ENTRIES} products; remove some to save more",
        limit=MAX_ENTRIES,
    )


def not_on_sale(product_id: str) -> Problem:
    return Problem(
        409,
        "product_not_on_sale",
        f"Product {product_id} is not on sale and cannot be saved",
        title="Product not on sale",
        product_id=product_id,
    )


async def _checked_item(
    uow: UnitOfWork, product_id: str, variant_id: str | None
) -> tuple[catalog.ProductCard, str | None]:
    """The product (active) and the variant (active, of this product) being saved."""
    card = (await catalog.product_cards(uow, [product_id])).get(product_id)
    if card is None:
        if await catalog.get_product(uow, product_id, include_inactive=True) is None:
            raise not_found("Product", product_id)
        raise not_on_sale(product_id)  # a draft or an archived product
    if variant_id is None:
        return card, None
    variant = (await catalog.get_variants(uow, [variant_id])).get(variant_id)
    if variant is None or variant.product_id != product_id:
        raise validation_problem(
            "variant_id", f"no variant {variant_id} of product {product_id}", code="unknown_variant"
        )
    if not variant.active:
        raise not_on_sale(product_id)
    return card, variant_id


async def _sold_out(uow: UnitOfWork, variant_ids: Collection[str]) -> bool:
    """Nothing of these variants can be sold anywhere (the figure ``StockChanged`` carries)."""
    found = await inventory.availability(uow, variant_ids)
    return not any(found.get(v, 0) > 0 for v in variant_ids)


def dialect_insert(uow: UnitOfWork, table: Table) -> Any:
    """The backend's ``INSERT`` (both have ``ON CONFLICT``)."""
    return (sqlite_insert if uow.is_sqlite else pg_insert)(table)


async def save_to_wishlist(
    uow: UnitOfWork,
    user_id: str,
    product_id: str,
    variant_id: str | None = None,
    *,
    now: datetime | None = None,
) -> SavedEntry:
    """Save a product (or one variant of it) for the customer; saving it again keeps one
    entry, now watching the variant named last. 404 for an unknown product, 409
    ``product_not_on_sale`` for a draft or archived one (or an inactive variant), 422
    ``unknown_variant`` for a variant of another product, 409 ``wishlist_full`` past
    :data:`MAX_ENTRIES`. Saved sold out, the entry is armed for the back-in-stock mail."""
    now = now or utcnow()
    card, variant_id = await _checked_item(uow, product_id, variant_id)
    c = WISHLIST.c
    existing = await uow.scalar(
        select(c.saved_at).where(c.user_id == user_id, c.product_id == product_id)
    )
    if existing is None:
        held = await uow.scalar(select(func.count()).where(c.user_id == user_id))
        # A cap against abuse, checked before the insert: two saves racing at the limit may
        # both pass it, which a cap can afford.
        if int(held or 0) >= MAX_ENTRIES:
            raise wishlist_full()
    watched = [variant_id] if variant_id is not None else list(card.variant_ids)
    sold_out_at = now if await _sold_out(uow, watched) else None
    statement = dialect_insert(uow, WISHLIST).values(
        user_id=user_id,
        product_id=product_id,
        variant_id=variant_id,
        saved_at=now,
        sold_out_at=sold_out_at,
        restock_notified_at=None,
    )
    await uow.execute(
        statement.on_conflict_do_update(
            index_elements=[c.user_id, c.product_id],
            set_={
                "variant_id": statement.excluded.variant_id,
                # Still sold out: armed since it first was; available: nothing to tell.
                "sold_out_at": func.coalesce(c.sold_out_at, statement.excluded.sold_out_at)
                if sold_out_at is not None
                else None,
            },
        )
    )
    return SavedEntry(product_id, variant_id, existing or now)


async def remove_from_wishlist(uow: UnitOfWork, user_id: str, product_id: str) -> None:
    """Forget a saved product; 404 when it is not on the customer's list."""
    c = WISHLIST.c
    removed = await uow.changed(
        delete(WISHLIST).where(c.user_id == user_id, c.product_id == product_id)
    )
    if not removed:
        raise not_found("Wishlist entry", product_id)


async def wishlist_product_ids(uow: UnitOfWork, user_id: str) -> list[str]:
    """The products the customer saved, the most recently saved first."""
    c = WISHLIST.c
    rows = await uow.execute(
        select(c.product_id).where(c.user_id == user_id).order_by(c.saved_at.desc(), c.product_id)
    )
    return [r[0] for r in rows]


async def is_saved(uow: UnitOfWork, user_id: str, product_id: str) -> bool:
    c = WISHLIST.c
    found = await uow.scalar(
        select(c.product_id).where(c.user_id == user_id, c.product_id == product_id)
    )
    return found is not None


async def wishlist(uow: UnitOfWork, user_id: str, *, country: str) -> list[WishlistItem]:
    """The customer's saved products, the most recent first, each with its current price and
    whether it can be delivered to ``country``: four reads whatever the list's length."""
    c = WISHLIST.c
    rows = list(
        await uow.execute(
            select(c.product_id, c.variant_id, c.saved_at)
            .where(c.user_id == user_id)
            .order_by(c.saved_at.desc(), c.product_id)
        )
    )
    if not rows:
        return []
    product_ids = [r.product_id for r in rows]
    cards = await catalog.product_cards(uow, product_ids)
    chosen = [r.variant_id for r in rows if r.variant_id is not None]
    variants = await catalog.get_variants(uow, chosen)
    stock_of = {v for card in cards.values() for v in card.variant_ids} | set(chosen)
    notes = await inventory.stock_notes(uow, stock_of, country)
    gone = [p for p in product_ids if p not in cards]
    archived = await catalog.get_products(uow, gone, include_inactive=True) if gone else {}
    return [
        _item(r.product_id, r.variant_id, r.saved_at, cards, variants, notes, archived)
        for r in rows
    ]


def _item(
    product_id: str,
    variant_id: str | None,
    saved_at: datetime,
    cards: dict[str, catalog.ProductCard],
    variants: dict[str, catalog.VariantInfo],
    notes: dict[str, catalog.StockNote],
    archived: dict[str, catalog.ProductView],
) -> WishlistItem:
    card = cards.get(product_id)
    if card is None:
        view = archived.get(product_id)
        return WishlistItem(
            product_id,
            variant_id,
            saved_at,
            title=view.title if view else product_id,
            slug=None,
            image=None,
            variant_title=None,
            currency=view.currency if view else None,
            price=None,
            on_sale=False,
            in_stock=False,
            available_elsewhere=False,
            cart_variant_id=None,
        )
    variant = variants.get(variant_id) if variant_id else None
    watched: Sequence[str] = [variant_id] if variant_id else card.variant_ids
    stocked = [v for v in watched if (n := notes.get(v)) is not None and n.in_stock]
    elsewhere = any((n := notes.get(v)) is not None and n.available_elsewhere for v in watched)
    on_sale = variant.active if variant is not None else True
    return WishlistItem(
        product_id,
        variant_id,
        saved_at,
        title=card.title,
        slug=card.slug,
        image=card.image,
        variant_title=(variant.title or None) if variant is not None else None,
        currency=variant.currency if variant is not None else card.currency,
        price=variant.price if variant is not None else card.min_price,
        on_sale=on_sale,
        in_stock=on_sale and bool(stocked),
        available_elsewhere=on_sale and not stocked and elsewhere,
        cart_variant_id=stocked[0] if on_sale and stocked else None,
    )


# --------------------------------------------------------------------------------------------
# Back in stock


async def restock_check(uow: UnitOfWork, variant_id: str, *, now: datetime | None = None) -> int:
    """A ``StockChanged`` for ``variant_id`` arrived: arm the entries whose saved item is now
    sold out, and tell (one ``WishlistItemBackInStock`` each) those that were sold out and are
    available again. Judged on the stock as it is now, not as the event saw it, so a late or
    repeated event changes nothing. Returns how many customers are told."""
    c = WISHLIST.c
    variant = (await catalog.get_variants(uow, [variant_id])).get(variant_id)
    if variant is None:
        return 0
    product_id = variant.product_id
    # The common case, a product nobody saved, costs this one indexed read.
    if await uow.scalar(select(c.user_id).where(c.product_id == product_id).limit(1)) is None:
        return 0
    card = (await catalog.product_cards(uow, [product_id])).get(product_id)
    if card is None:
        return 0  # withdrawn: nothing to tell until it is on sale again
    available = await inventory.availability(uow, {*card.variant_ids, variant_id})
    product_in_stock = any(available.get(v, 0) > 0 for v in card.variant_ids)
    variant_in_stock = variant.active and available.get(variant_id, 0) > 0
    now = now or utcnow()
    told = await _judge(uow, product_id, c.variant_id == variant_id, variant_in_stock, now)
    told += await _judge(uow, product_id, c.variant_id.is_(None), product_in_stock, now)
    return told


async def _judge(
    uow: UnitOfWork, product_id: str, watching: Any, in_stock: bool, now: datetime
) -> int:
    c = WISHLIST.c
    mine = (c.product_id == product_id, watching)
    if not in_stock:
        await uow.execute(
            update(WISHLIST).where(*mine, c.sold_out_at.is_(None)).values(sold_out_at=now)
        )
        return 0
    # The conditional update is the decision: of two transactions judging the same return,
    # the second finds the rows cleared (PostgreSQL re-reads them once the first commits;
    # SQLite runs one writer at a time) and tells nobody.
    told = list(
        await uow.execute(
            update(WISHLIST)
            .where(*mine, c.sold_out_at.is_not(None))
            .values(sold_out_at=None, restock_notified_at=now)
            .returning(c.user_id, c.variant_id)
        )
    )
    await events.publish_many(
        uow,
        (
            (
                BACK_IN_STOCK,
                user_id,
                {"user_id": user_id, "product_id": product_id, "variant_id": variant_id},
            )
            for user_id, variant_id in told
        ),
    )
    return len(told)


async def back_in_stock_mail(
    uow: UnitOfWork, user_id: str, product_id: str, variant_id: str | None
) -> BackInStock | None:
    """What the back-in-stock mail says, read when it is written: None when the customer
    removed the item meanwhile, or the product left sale again."""
    c = WISHLIST.c
    still = await uow.scalar(
        select(c.product_id).where(c.user_id == user_id, c.product_id == product_id)
    )
    card = (await catalog.product_cards(uow, [product_id])).get(product_id)
    if still is None or card is None:
        return None
    variants = await catalog.get_variants(uow, [variant_id]) if variant_id else {}
    variant = variants.get(variant_id) if variant_id else None
    return BackInStock(
        product_id=product_id,
        title=card.title,
        variant_title=(variant.title or None) if variant is not None else None,
        currency=variant.currency if variant is not None else card.currency,
        price=variant.price if variant is not None else card.min_price,
    )
