"""What every cart rule shares: the limits, whose cart it is, what the service hands out, the
problems it answers with, and the signed tokens guests hold for their carts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from itsdangerous import BadSignature, URLSafeSerializer

from mercato import problems
from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.inventory import service as inventory
from mercato.problems import Problem
from mercato.settings import Settings

CART_COOKIE = "mercato_cart"
CART_HEADER = "X-Cart-Token"
_SIGNING_SALT = "cart"
_MAX_TOKEN_LENGTH = 200

StockStatus = Literal["in_stock", "short", "out_of_stock", "not_deliverable"]


# --- limits and owners ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartLimits:
    max_line_quantity: int = 99
    max_lines: int = 100
    guest_ttl_seconds: int = 30 * 24 * 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> CartLimits:
        return cls(
            max_line_quantity=settings.cart_max_line_quantity,
            max_lines=settings.cart_max_lines,
            guest_ttl_seconds=settings.guest_cart_ttl_seconds,
        )


@dataclass(frozen=True, slots=True)
class CartOwner:
    """Whose cart: a signed-in customer's (``user_id``) or a guest's (``guest_cart_id`` from the
    signed token; ``None`` for a guest without a cart yet)."""

    user_id: str | None = None
    guest_cart_id: str | None = None


# --- what the service hands out ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CartLineInfo:
    id: str
    cart_id: str
    variant_id: str
    quantity: int
    unit_price_seen: int
    currency: str
    added_at: datetime
    updated_at: datetime
    seller_id: str | None = None
    """The seller of the offer the line buys; ``None``: the house (the shop's own stock)."""


@dataclass(frozen=True, slots=True)
class CartInfo:
    id: str
    user_id: str | None
    currency: str
    version: int
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    lines: tuple[CartLineInfo, ...] = ()

    @property
    def is_guest(self) -> bool:
        return self.user_id is None


@dataclass(frozen=True, slots=True)
class CartChange:
    """The outcome of a mutation: which cart, and whether it was created by it.

    Changes that already hold what the answer needs also hand it over, so the answer reads
    nothing twice: ``cart`` is the cart after the change (lines included), ``variants`` and
    ``stock`` the catalog variants and units available the change looked up (see ``view_cart``).
    """

    cart_id: str
    created: bool = False
    cart: CartInfo | None = None
    variants: Mapping[str, catalog.VariantInfo] = field(default_factory=dict)
    stock: Mapping[str, inventory.StockSpread] = field(default_factory=dict)


# --- offers: what a line buys from a marketplace seller --------------------------------------


@dataclass(frozen=True, slots=True)
class LineOffer:
    """A seller's offer as a cart line needs it (``seller_id`` ``None``: the house's)."""

    offer_id: str
    variant_id: str
    seller_id: str | None
    seller_name: str
    price: int
    currency: str
    available: int


OfferReader = Callable[
    [UnitOfWork, str | None, str | None, str | None, str | None], Awaitable[LineOffer]
]
"""(uow, offer_id, variant_id, seller_id, country) → the offer a line names, checked buyable
(its problem raised otherwise). Registered by ``modules.wire`` (the marketplace's buy box);
the cart sits below the marketplace and cannot ask it directly."""

offer_readers: list[OfferReader] = []

OfferPrices = Callable[
    [UnitOfWork, Collection[tuple[str, str]], str | None],
    Awaitable[Mapping[tuple[str, str], LineOffer]],
]
offer_price_readers: list[OfferPrices] = []
"""(uow, (variant id, seller id) pairs, country) → each pair's offer now, buyable for the
country (absent: no longer offered there),
for the cart view's current prices of sellers' lines (registered by ``modules.wire``)."""


# --- problems --------------------------------------------------------------------------------


def invalid_cart_token() -> Problem:
    return Problem(
        400,
        "invalid_cart_token",
        "The cart token is not valid or its cart no longer exists",
        title="Invalid cart token",
    )


def line_not_found(line_id: str) -> Problem:
    return problems.not_found("Cart line", line_id)


def out_of_stock(variant_id: str, sku: str, available: int, requested: int) -> Problem:
    return Problem(
        409,
        "out_of_stock",
        f"Only {available} of {sku} available; {requested} requested",
        variant_id=variant_id,
        available=available,
        requested=requested,
    )


def check_quantity(quantity: int, limits: CartLimits) -> None:
    if not 1 <= quantity <= limits.max_line_quantity:
        # The shop's limit, a setting: the same code as when a growing line reaches it.
        raise problems.validation_problem(
            "quantity", f"must be between 1 and {limits.max_line_quantity}", code="quantity_limit"
        )


# --- guest tokens ----------------------------------------------------------------------------


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_SIGNING_SALT)


def sign_cart_token(secret_key: str, cart_id: str) -> str:
    """The token a guest holds for its cart (cookie ``mercato_cart`` or header ``X-Cart-Token``)."""
    return str(_serializer(secret_key).dumps(cart_id))


def read_cart_token(secret_key: str, token: str) -> str:
    """The cart id inside a token; a forged or mangled token is a 400 ``invalid_cart_token``."""
    if not token or len(token) > _MAX_TOKEN_LENGTH:
        raise invalid_cart_token()
    try:
        value = _serializer(secret_key).loads(token)
    except BadSignature as exc:
        raise invalid_cart_token() from exc
    if not isinstance(value, str) or not value.startswith("crt_") or len(value) > 40:
        raise invalid_cart_token()
    return value
