"""The cart's public face: guest and customer carts, lines with the price seen, merge on login,
the view with current prices and stock notices, the Redis copy, and guest-cart expiry. Other
modules import this file only; the rules live by family in

* :mod:`~mercato.cart.changes`: a shopper's changes (add, quantity, remove, empty, accept a
  price) and emptying a cart once its order is placed;
* :mod:`~mercato.cart.storage`: reading a cart with its lines, locking or creating it;
* :mod:`~mercato.cart.view`: the cart as a shopper sees it;
* :mod:`~mercato.cart.merge`: a guest cart joining the customer's, and expiry;
* :mod:`~mercato.cart.cache`: the Redis copy;
* :mod:`~mercato.cart.common`: limits, owners, guest tokens and what callers see;
* :mod:`~mercato.cart.guests`: guests' writes, throttled per client IP.

Every function takes the caller's :class:`~mercato.db.UnitOfWork` first.
"""

from __future__ import annotations

from mercato.cart.cache import CartCache, cache_for, drain_invalidations
from mercato.cart.changes import (
    Edit,
    accept_price,
    add_item,
    clear_cart,
    edit_cart,
    empty_cart,
    remove_item,
    set_quantity,
)
from mercato.cart.common import (
    CART_COOKIE,
    CART_HEADER,
    CartChange,
    CartInfo,
    CartLimits,
    CartLineInfo,
    CartOwner,
    LineOffer,
    StockStatus,
    invalid_cart_token,
    offer_price_readers,
    offer_readers,
    read_cart_token,
    sign_cart_token,
)
from mercato.cart.guests import GuestThrottle, throttle_guest
from mercato.cart.merge import expire_guest_carts, merge_carts
from mercato.cart.storage import cart_lines_for_checkout, get_cart, get_cart_for, load_cart
from mercato.cart.view import CartLineView, CartView, view_cart

__all__ = [
    "CART_COOKIE",
    "CART_HEADER",
    "CartCache",
    "CartChange",
    "CartInfo",
    "CartLimits",
    "CartLineInfo",
    "CartLineView",
    "CartOwner",
    "CartView",
    "Edit",
    "GuestThrottle",
    "LineOffer",
    "StockStatus",
    "accept_price",
    "add_item",
    "cache_for",
    "cart_lines_for_checkout",
    "clear_cart",
    "drain_invalidations",
    "edit_cart",
    "empty_cart",
    "expire_guest_carts",
    "get_cart",
    "get_cart_for",
    "invalid_cart_token",
    "load_cart",
    "merge_carts",
    "offer_price_readers",
    "offer_readers",
    "read_cart_token",
    "remove_item",
    "set_quantity",
    "sign_cart_token",
    "throttle_guest",
    "view_cart",
]
