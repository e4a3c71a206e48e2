"""The recommendations module's public face: building the lists and serving a product's.

* :mod:`~mercato.recommendations.rules`: association rules (frequently bought together);
* :mod:`~mercato.recommendations.similarity`: item-to-item similarity (also bought);
* :mod:`~mercato.recommendations.build`: the offline build and the worker's rebuild;
* :mod:`~mercato.recommendations.store`: the versioned lists and each process's copy;
* :mod:`~mercato.recommendations.evaluation`: the hold-out evaluation.

Serving starts from the product's precomputed list and drops, at request time, what a shopper
must not be offered: the product itself, products no longer on sale (archived or draft),
products no warehouse can deliver to the shopper's destination, and what is already in the
cart; a list left short is filled up from the best sellers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from mercato.cart import service as cart
from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.problems import not_found
from mercato.recommendations import personal, viewed, wishlist
from mercato.recommendations.build import BuildStats, build, compute_lists, rebuild_if_due
from mercato.recommendations.recent import Recent
from mercato.recommendations.store import EMPTY, Item, Lists, last_build, served
from mercato.runtime import Runtime

Kind = Literal["bought_together", "also_bought"]
Reason = Literal["rule", "similar", "popular"]
KINDS: tuple[Kind, ...] = ("bought_together", "also_bought")
MAX_LIMIT = 20
_REASON: dict[str, Reason] = {"bought_together": "rule", "also_bought": "similar"}


@dataclass(frozen=True, slots=True)
class Recommendation:
    product: catalog.ProductCard
    reason: Reason
    item: Item
    variant_id: str  # the first of its variants in stock for the destination ("Add both")
    because: str | None = None  # for you: the product of the shopper's it comes from


@dataclass(frozen=True, slots=True)
class PageLists:
    """What a product page shows under the product."""

    bought_together: list[Recommendation]
    also_bought: list[Recommendation]


Candidate = tuple[Item, Reason, str | None]  # the item, why, and the seed it came from


def _candidates(
    lists: Lists, kind: Kind, product_id: str, excluded: set[str]
) -> Iterator[Candidate]:
    return _then_popular(
        lists, ((item, _REASON[kind], None) for item in lists.of(kind, product_id)), excluded
    )


def _then_popular(
    lists: Lists, first: Iterable[Candidate], excluded: set[str]
) -> Iterator[Candidate]:
    """``first``, then the best sellers, each product once and none of ``excluded``."""
    seen = set(excluded)
    popular: Iterable[Candidate] = ((item, "popular", None) for item in lists.of("popular"))
    for candidates in (first, popular):
        for item, reason, because in candidates:
            if item.product_id not in seen:
                seen.add(item.product_id)
                yield item, reason, because


@dataclass(slots=True)
class Filters:
    """This process's recent reads of what may be offered (see :mod:`.recent`)."""

    cards: Recent[str, catalog.ProductCard]
    reaching: Recent[tuple[str, str], str]  # (country, product) -> a variant that reaches it

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> Filters:
        found = runtime.extras.get(FILTERS)
        if found is None:
            ttl = runtime.settings.recs_reload_seconds
            found = runtime.extras[FILTERS] = cls(Recent(ttl), Recent(ttl))
        return cast(Filters, found)


FILTERS = "recommendations.filters"


async def _cards(
    uow: UnitOfWork, ids: Collection[str], filters: Filters | None
) -> dict[str, catalog.ProductCard]:
    async def load(missing: list[str]) -> dict[str, catalog.ProductCard]:
        return await catalog.product_cards(uow, missing)

    return await (filters.cards if filters else Recent[str, catalog.ProductCard](0)).read(ids, load)


async def _reaching(
    uow: UnitOfWork,
    cards: Collection[catalog.ProductCard],
    country: str,
    filters: Filters | None,
) -> dict[str, str]:
    """For those of the products with a variant in stock for delivery to ``country``, the
    first such variant."""
    by_id = {c.id: c for c in cards}

    async def load(missing: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        wanted = [by_id[pid] for _, pid in missing]
        notes = await inventory.stock_notes(
            uow, [v for card in wanted for v in card.variant_ids], country
        )
        found: dict[tuple[str, str], str] = {}
        for card in wanted:
            stocked = [v for v in card.variant_ids if v in notes and notes[v].in_stock]
            if stocked:
                found[country, card.id] = stocked[0]
        return found

    recent = filters.reaching if filters else Recent[tuple[str, str], str](0)
    found = await recent.read([(country, pid) for pid in by_id], load)
    return {pid: variant for (_, pid), variant in found.items()}


async def recommend(
    uow: UnitOfWork,
    lists: Lists,
    product_id: str,
    *,
    kind: Kind,
    limit: int,
    country: str,
    in_cart: Collection[str] = (),
    filters: Filters | None = None,
) -> list[Recommendation]:
    """Up to ``limit`` products to show with ``product_id``, each with its reason; 404 for a
    product not on sale. ``filters``: this process's recent reads (None: read everything)."""
    pending = _candidates(lists, kind, product_id, {product_id, *in_cart})
    found, cards = await _offerable(uow, pending, limit, country, filters, also_read={product_id})
    if product_id not in cards:
        raise not_found("Product", product_id)
    return found


async def _offerable(
    uow: UnitOfWork,
    pending: Iterator[Candidate],
    limit: int,
    country: str,
    filters: Filters | None,
    *,
    also_read: Collection[str] = (),
) -> tuple[list[Recommendation], dict[str, catalog.ProductCard]]:
    """The first ``limit`` candidates on sale with a variant that reaches ``country``, and the
    cards read with the first batch (``also_read`` among them)."""
    found: list[Recommendation] = []
    # Checked a few more than needed at a time (most pass); ``also_read`` (the product whose
    # lists these are) is read with the first batch, so a request costs one catalog read and
    # one stock read when all goes well, and none when this process read them lately.
    batch = list(_take(pending, limit * 2))
    cards = await _cards(uow, {*also_read, *(item.product_id for item, _, _ in batch)}, filters)
    first = cards
    while batch:
        listed = [cards[item.product_id] for item, _, _ in batch if item.product_id in cards]
        reaching = await _reaching(uow, listed, country, filters)
        for item, reason, because in batch:
            variant = reaching.get(item.product_id)
            if variant is not None and len(found) < limit:
                found.append(Recommendation(cards[item.product_id], reason, item, variant, because))
        if len(found) >= limit:
            break
        batch = list(_take(pending, (limit - len(found)) * 2))
        cards = await _cards(uow, {item.product_id for item, _, _ in batch}, filters)
    return found, first


async def for_shopper(
    uow: UnitOfWork,
    runtime: Runtime,
    product_id: str,
    *,
    kind: Kind,
    limit: int,
    country: str,
    cart_owner: cart.CartOwner | None,
) -> list[Recommendation]:
    """:func:`recommend` from this process's copy of the lists, leaving out the caller's cart."""
    return await recommend(
        uow,
        await served(runtime, uow),
        product_id,
        kind=kind,
        limit=limit,
        country=country,
        in_cart=await products_in_cart(uow, cart_owner),
        filters=Filters.for_runtime(runtime),
    )


PAGE_BOUGHT_TOGETHER = 3
PAGE_ALSO_BOUGHT = 8


async def page_lists(
    uow: UnitOfWork,
    runtime: Runtime,
    product_id: str,
    *,
    country: str,
    cart_owner: cart.CartOwner | None,
) -> PageLists:
    """The product page's two rows: bought together (the first with "Add both") and also
    bought, the second never repeating the first."""
    lists = await served(runtime, uow)
    in_cart = await products_in_cart(uow, cart_owner)
    together = await recommend(
        uow,
        lists,
        product_id,
        kind="bought_together",
        limit=PAGE_BOUGHT_TOGETHER,
        country=country,
        in_cart=in_cart,
        filters=Filters.for_runtime(runtime),
    )
    # A best seller is no "frequently bought together": that row keeps the rules only.
    together = [r for r in together if r.reason == "rule"]
    shown = {r.product.id for r in together}
    also = await recommend(
        uow,
        lists,
        product_id,
        kind="also_bought",
        limit=PAGE_ALSO_BOUGHT,
        country=country,
        in_cart=in_cart | shown,
        filters=Filters.for_runtime(runtime),
    )
    return PageLists(together, also)


@dataclass(frozen=True, slots=True)
class ForYou:
    """The home page's row: for you when the shopper left something to go on, else the best
    sellers (``personal`` False: "trending")."""

    items: list[Recommendation]
    personal: bool


async def for_you(
    uow: UnitOfWork,
    runtime: Runtime,
    *,
    user_id: str | None,
    guest_key: str | None = None,
    country: str,
    limit: int,
    cart_owner: cart.CartOwner | None,
) -> ForYou:
    """Recommended for you (:mod:`.personal`): from what the customer bought and saved and
    what the shopper (the customer, else the guest ``guest_key`` names) viewed, most recent
    first; never what they bought or saved or have in the cart; filled up from the best
    sellers. A shopper with nothing to go on gets the best sellers."""
    seeds = await shopper_seeds(uow, user_id=user_id, guest_key=guest_key)
    lists = await served(runtime, uow)
    first = ((c.item, cast(Reason, c.reason), c.because) for c in personal.blend(lists, seeds))
    pending = _then_popular(lists, first, seeds.owned() | await products_in_cart(uow, cart_owner))
    found, _ = await _offerable(uow, pending, limit, country, Filters.for_runtime(runtime))
    return ForYou(found, personal=any(r.reason != "popular" for r in found))


async def shopper_seeds(
    uow: UnitOfWork, *, user_id: str | None, guest_key: str | None
) -> personal.Seeds:
    """What a shopper left behind: a customer's purchases (each product once, the latest
    first), saved products and views; a guest's views."""
    limit = personal.MAX_SEEDS
    bought: list[str] = []
    saved: list[str] = []
    if user_id is not None:
        purchases = await orders.customer_purchases(uow, user_id)
        bought = list(dict.fromkeys(p.product_id for p in purchases))[:limit]
        saved = (await wishlist.wishlist_product_ids(uow, user_id))[:limit]
    looked = await viewed.recently_viewed(uow, user_id=user_id, guest_key=guest_key, limit=limit)
    return personal.Seeds(bought=bought, saved=saved, viewed=looked)


CART_LIMIT = 4


async def complete_the_cart(
    uow: UnitOfWork,
    runtime: Runtime,
    *,
    in_cart: Sequence[str],
    country: str,
    limit: int = CART_LIMIT,
) -> list[Recommendation]:
    """ "Complete your order": what is bought with the products in the cart (rules first, then
    similar products; no best sellers: a cart is no place for filler), none already in it."""
    if not in_cart:
        return []
    lists = await served(runtime, uow)
    return await _complements_of(uow, lists, in_cart, country, limit, Filters.for_runtime(runtime))


async def _complements_of(
    uow: UnitOfWork,
    lists: Lists,
    products: Sequence[str],
    country: str,
    limit: int,
    filters: Filters | None,
) -> list[Recommendation]:
    seeds = personal.Seeds(bought=products)
    first = ((c.item, cast(Reason, c.reason), c.because) for c in personal.blend(lists, seeds))
    found, _ = await _offerable(uow, iter(list(first)), limit, country, filters)
    return found


MAIL_LIMIT = 4


async def for_order_mail(
    uow: UnitOfWork,
    runtime: Runtime,
    product_ids: Sequence[str],
    *,
    country: str,
    limit: int = MAIL_LIMIT,
) -> list[Recommendation]:
    """What the order confirmation suggests: what goes with the order's products, none of them,
    for the order's destination, from this process's copy of the lists (the worker's, which
    writes the mails)."""
    lists = await served(runtime, uow)
    return await _complements_of(
        uow, lists, product_ids, country, limit, Filters.for_runtime(runtime)
    )


def _take(pending: Iterator[Candidate], n: int) -> Iterable[Candidate]:
    for _ in range(n):
        nxt = next(pending, None)
        if nxt is None:
            return
        yield nxt


async def products_in_cart(uow: UnitOfWork, owner: cart.CartOwner | None) -> set[str]:
    """The products in the caller's cart (none without a cart, or for a cart gone)."""
    if owner is None or (owner.user_id is None and owner.guest_cart_id is None):
        return set()
    found = await cart.get_cart_for(uow, owner.user_id, owner.guest_cart_id)
    if found is None or not found.lines:
        return set()
    variants = await catalog.get_variants(uow, [line.variant_id for line in found.lines])
    return {v.product_id for v in variants.values()}


__all__ = [
    "CART_LIMIT",
    "EMPTY",
    "KINDS",
    "MAIL_LIMIT",
    "MAX_LIMIT",
    "PAGE_ALSO_BOUGHT",
    "PAGE_BOUGHT_TOGETHER",
    "BuildStats",
    "Filters",
    "ForYou",
    "Item",
    "Kind",
    "Lists",
    "PageLists",
    "Reason",
    "Recommendation",
    "build",
    "complete_the_cart",
    "compute_lists",
    "for_order_mail",
    "for_shopper",
    "for_you",
    "last_build",
    "page_lists",
    "products_in_cart",
    "rebuild_if_due",
    "recommend",
    "served",
]


# --------------------------------------------------------------------------------------------
# The shopper's own signals: the wishlist (with the back-in-stock mail) and recently viewed,
# whose rules live in :mod:`.wishlist` and :mod:`.viewed`.

WISHLIST_MAX_ENTRIES = wishlist.MAX_ENTRIES
BACK_IN_STOCK = wishlist.BACK_IN_STOCK
WishlistItem = wishlist.WishlistItem
SavedEntry = wishlist.SavedEntry
BackInStock = wishlist.BackInStock
save_to_wishlist = wishlist.save_to_wishlist
remove_from_wishlist = wishlist.remove_from_wishlist
wishlist_items = wishlist.wishlist
wishlist_product_ids = wishlist.wishlist_product_ids
is_saved = wishlist.is_saved
restock_check = wishlist.restock_check
back_in_stock_mail = wishlist.back_in_stock_mail

RECENTLY_VIEWED_KEEP = viewed.KEEP
VIEWED_COOKIE = viewed.VIEWED_COOKIE
Viewer = viewed.Viewer
PageSignals = viewed.PageSignals
viewer_of = viewed.viewer_of
set_viewer_cookie = viewed.set_viewer_cookie
record_view = viewed.record_view
recently_viewed = viewed.recently_viewed
merge_recently_viewed = viewed.merge_recently_viewed
merge_viewed_on_login = viewed.merge_viewed_on_login
forget_stale_guest_views = viewed.forget_stale_guest_views
page_signals = viewed.page_signals

__all__ += [
    "BACK_IN_STOCK",
    "RECENTLY_VIEWED_KEEP",
    "VIEWED_COOKIE",
    "WISHLIST_MAX_ENTRIES",
    "BackInStock",
    "PageSignals",
    "SavedEntry",
    "Viewer",
    "WishlistItem",
    "back_in_stock_mail",
    "forget_stale_guest_views",
    "is_saved",
    "merge_recently_viewed",
    "merge_viewed_on_login",
    "page_signals",
    "recently_viewed",
    "record_view",
    "remove_from_wishlist",
    "restock_check",
    "save_to_wishlist",
    "set_viewer_cookie",
    "viewer_of",
    "wishlist_items",
    "wishlist_product_ids",
]
