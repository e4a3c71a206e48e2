"""Cart rules: guest and customer carts, lines with the price seen, merge on login, the view
with current prices and stock notices, the Redis copy, and guest-cart expiry.

Every change to a cart first bumps the cart row's ``version`` with one ``UPDATE … RETURNING``:
that takes the cart's row lock on PostgreSQL (SQLite serialises writers with ``BEGIN IMMEDIATE``),
so concurrent edits of one cart queue behind each other and every rule checked after it (line
count, quantity bounds) holds. The line changes themselves are single Core statements; adding is
one upsert whose ``DO UPDATE … WHERE`` enforces the per-line maximum in the database.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from itsdangerous import BadSignature, URLSafeSerializer
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Row, Select, Table, bindparam, case, delete, event, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from mercato import problems
from mercato.cart.models import cart_lines, carts
from mercato.catalog import service as catalog
from mercato.db import utcnow
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.money import format_minor
from mercato.problems import Problem
from mercato.settings import Settings

if TYPE_CHECKING:
    from mercato.runtime import Runtime

log = logging.getLogger("mercato.cart")

CART_COOKIE = "mercato_cart"
CART_HEADER = "X-Cart-Token"
_SIGNING_SALT = "cart"
_MAX_TOKEN_LENGTH = 200

StockStatus = Literal["in_stock", "short", "out_of_stock"]


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
    stock: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CartLineView:
    id: str
    variant_id: str
    product_id: str | None
    sku: str | None
    title: str
    product_title: str
    options: dict[str, str]
    image: str | None
    quantity: int
    currency: str
    unit_price: str
    unit_price_seen: str
    price_changed: bool
    line_total: str
    stock_status: StockStatus
    available: int | None
    available_hint: str | None
    purchasable: bool
    added_at: datetime


@dataclass(frozen=True, slots=True)
class CartView:
    id: str | None
    currency: str | None
    lines: tuple[CartLineView, ...]
    item_count: int
    line_count: int
    subtotal: str
    notices: tuple[str, ...]


# --- problems --------------------------------------------------------------------------------


def invalid_cart_token() -> Problem:
    return Problem(
        400,
        "invalid_cart_token",
        "The cart token is not valid or its cart no longer exists",
        title="Invalid cart token",
    )


def _line_not_found(line_id: str) -> Problem:
    return problems.not_found("Cart line", line_id)


def _out_of_stock(variant_id: str, sku: str, available: int, requested: int) -> Problem:
    return Problem(
        409,
        "out_of_stock",
        f"Only {available} of {sku} available; {requested} requested",
        variant_id=variant_id,
        available=available,
        requested=requested,
    )


def _check_quantity(quantity: int, limits: CartLimits) -> None:
    if not 1 <= quantity <= limits.max_line_quantity:
        raise problems.validation_problem(
            "quantity", f"must be between 1 and {limits.max_line_quantity}"
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


# --- the Redis copy --------------------------------------------------------------------------

_PENDING = "mercato.cart.invalidate"
_HOOKED = "mercato.cart.hooked"
_background: set[asyncio.Task[None]] = set()


class CartCache:
    """The lines of active carts in Redis at ``cart:<id>``, tagged with the cart's version.

    Only committed rows are ever written here (on reads); every change bumps the version, and an
    entry whose version is not the database's is ignored, so the database stays the truth even
    when an invalidation is lost. Redis errors fall back to the database.
    """

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def key(cart_id: str) -> str:
        return f"cart:{cart_id}"

    async def get(self, cart_id: str, version: int) -> tuple[CartLineInfo, ...] | None:
        try:
            raw = await self.redis.get(self.key(cart_id))
        except RedisError:
            log.warning("cart cache read failed for %s", cart_id, exc_info=True)
            return None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if data["version"] != version:
                return None
            return tuple(_line_from_json(cart_id, item) for item in data["lines"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed cart cache entry for %s", cart_id)
            return None

    async def put(self, cart_id: str, version: int, lines: Iterable[CartLineInfo]) -> None:
        doc = {"version": version, "lines": [_line_to_json(line) for line in lines]}
        try:
            await self.redis.set(self.key(cart_id), json.dumps(doc), ex=self.ttl_seconds)
        except RedisError:
            log.warning("cart cache write failed for %s", cart_id, exc_info=True)

    async def delete(self, *cart_ids: str) -> None:
        if not cart_ids:
            return
        try:
            await self.redis.delete(*(self.key(c) for c in cart_ids))
        except RedisError:
            log.warning("cart cache invalidation failed for %s", cart_ids, exc_info=True)

    def invalidate_after_commit(self, session: AsyncSession, cart_ids: Iterable[str]) -> None:
        """Delete the entries once the session's transaction has committed (never before: a
        reader could otherwise re-cache the old rows in between)."""
        pending: set[str] = session.info.setdefault(_PENDING, set())
        pending.update(cart_ids)
        if session.info.get(_HOOKED):
            return
        session.info[_HOOKED] = True
        event.listen(session.sync_session, "after_commit", self._after_commit)
        event.listen(session.sync_session, "after_rollback", _forget_pending)

    def _after_commit(self, session: Session) -> None:
        ids: set[str] | None = session.info.pop(_PENDING, None)
        if not ids:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - sessions always commit inside the loop
            return
        task = loop.create_task(self.delete(*sorted(ids)))
        _background.add(task)
        task.add_done_callback(_background.discard)


def cache_for(runtime: Runtime) -> CartCache | None:
    """The process's cart cache when Redis is configured (one per runtime)."""
    if runtime.redis is None:
        return None
    cache = runtime.extras.get("cart.cache")
    if not isinstance(cache, CartCache) or cache.redis is not runtime.redis:
        cache = CartCache(runtime.redis, runtime.settings.cart_cache_ttl_seconds)
        runtime.extras["cart.cache"] = cache
    return cache


def _forget_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


async def drain_invalidations() -> None:
    """Wait for scheduled cache deletions (tests and orderly shutdown)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


def _invalidate(session: AsyncSession, cache: CartCache | None, *cart_ids: str) -> None:
    if cache is not None:
        cache.invalidate_after_commit(session, cart_ids)


def _line_to_json(line: CartLineInfo) -> dict[str, Any]:
    return {
        "id": line.id,
        "variant_id": line.variant_id,
        "quantity": line.quantity,
        "unit_price_seen": line.unit_price_seen,
        "currency": line.currency,
        "added_at": line.added_at.isoformat(),
        "updated_at": line.updated_at.isoformat(),
    }


def _line_from_json(cart_id: str, item: dict[str, Any]) -> CartLineInfo:
    return CartLineInfo(
        id=str(item["id"]),
        cart_id=cart_id,
        variant_id=str(item["variant_id"]),
        quantity=int(item["quantity"]),
        unit_price_seen=int(item["unit_price_seen"]),
        currency=str(item["currency"]),
        added_at=datetime.fromisoformat(item["added_at"]),
        updated_at=datetime.fromisoformat(item["updated_at"]),
    )


# --- reading ---------------------------------------------------------------------------------


# Carts are read and changed on every add-to-cart and checkout: prebuilt Core statements, so a
# call binds values instead of building (and cache-keying) a statement.
_LINE_ORDER = (cart_lines.c.added_at, cart_lines.c.id)
_LINES_OF_CART = (
    select(cart_lines).where(cart_lines.c.cart_id == bindparam("b_cart")).order_by(*_LINE_ORDER)
)
_CUSTOMER_CART = select(carts).where(carts.c.user_id == bindparam("b_user"))
_LIVE_GUEST_CART = (carts.c.id == bindparam("b_cart"), carts.c.user_id.is_(None))
_GUEST_CART = select(carts).where(*_LIVE_GUEST_CART, carts.c.expires_at > bindparam("b_now"))
# A cart and its lines in one round trip: one row per line (one row of NULL line columns for a
# cart without lines), lines in display order.
_CART_AND_LINES = (
    select(
        *carts.c,
        cart_lines.c.id.label("line_id"),
        cart_lines.c.variant_id,
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
    *_LIVE_GUEST_CART, carts.c.expires_at > bindparam("b_now")
)


def _cart_from_row(row: Row[Any], lines: tuple[CartLineInfo, ...] = ()) -> CartInfo:
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


def _line_from_row(r: Row[Any]) -> CartLineInfo:
    return CartLineInfo(
        id=r.id,
        cart_id=r.cart_id,
        variant_id=r.variant_id,
        quantity=r.quantity,
        unit_price_seen=r.unit_price_seen,
        currency=r.currency,
        added_at=r.added_at,
        updated_at=r.updated_at,
    )


def _cart_from_joined_rows(rows: Sequence[Row[*tuple[Any, ...]]]) -> CartInfo | None:
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
        )
        for r in rows
        if r.line_id is not None
    )
    return _cart_from_row(first, lines)


def _owner_query(
    owner: CartOwner, now: datetime, customer: Select[Any], guest: Select[Any]
) -> tuple[Select[Any], dict[str, Any]] | None:
    """The statement (``customer`` or ``guest``) and parameters that find the owner's cart."""
    if owner.user_id is not None:
        return customer, {"b_user": owner.user_id}
    if owner.guest_cart_id is not None:
        return guest, {"b_cart": owner.guest_cart_id, "b_now": now}
    return None


async def _find_cart_row(session: AsyncSession, owner: CartOwner, now: datetime) -> Row[Any] | None:
    query = _owner_query(owner, now, _CUSTOMER_CART, _GUEST_CART)
    if query is None:
        return None
    row: Row[Any] | None = (await session.execute(*query)).first()
    return row


async def _find_cart(session: AsyncSession, owner: CartOwner, now: datetime) -> CartInfo | None:
    """The owner's cart with its lines, in one statement."""
    query = _owner_query(owner, now, _CUSTOMER_CART_AND_LINES, _GUEST_CART_AND_LINES)
    if query is None:
        return None
    return _cart_from_joined_rows((await session.execute(*query)).all())


async def _load_lines(session: AsyncSession, cart_id: str) -> tuple[CartLineInfo, ...]:
    rows = await session.execute(_LINES_OF_CART, {"b_cart": cart_id})
    return tuple(_line_from_row(r) for r in rows)


async def get_cart_for(
    session: AsyncSession, user_id: str | None, guest_cart_id: str | None
) -> CartInfo | None:
    """The customer's cart (when ``user_id`` is given) or the live guest cart, with its lines,
    straight from the database; ``None`` when there is none."""
    return await _find_cart(session, CartOwner(user_id, guest_cart_id), utcnow())


async def get_cart(session: AsyncSession, cart_id: str) -> CartInfo | None:
    """A cart by id with its lines (no ownership or expiry check)."""
    rows = (await session.execute(_CART_AND_LINES_BY_ID, {"b_cart": cart_id})).all()
    return _cart_from_joined_rows(rows)


async def load_cart(
    session: AsyncSession, owner: CartOwner, *, cache: CartCache | None = None
) -> CartInfo | None:
    """The caller's cart for viewing, lines from Redis when a current copy is there.

    A guest token whose cart is gone (expired, merged, never existed) is ``invalid_cart_token``.
    """
    if cache is None:
        cart = await _find_cart(session, owner, utcnow())
        if cart is None and owner.user_id is None and owner.guest_cart_id is not None:
            raise invalid_cart_token()
        return cart
    row = await _find_cart_row(session, owner, utcnow())
    if row is None:
        if owner.user_id is None and owner.guest_cart_id is not None:
            raise invalid_cart_token()
        return None
    lines = await cache.get(row.id, row.version)
    if lines is None:
        lines = await _load_lines(session, row.id)
        await cache.put(row.id, row.version, lines)
    return _cart_from_row(row, lines)


async def cart_lines_for_checkout(session: AsyncSession, cart_id: str) -> list[CartLineInfo]:
    """The cart's lines from the database (never the cache), oldest first."""
    return list(await _load_lines(session, cart_id))


# --- the view --------------------------------------------------------------------------------


def _display_name(variant: catalog.VariantInfo) -> str:
    if variant.title and variant.title != variant.product_title:
        return f"{variant.product_title} ({variant.title})"
    return variant.product_title


def _stock_status(available: int, quantity: int) -> StockStatus:
    if available <= 0:
        return "out_of_stock"
    return "in_stock" if available >= quantity else "short"


async def view_cart(
    session: AsyncSession,
    cart: CartInfo | None,
    *,
    low_stock_threshold: int,
    known_variants: Mapping[str, catalog.VariantInfo] | None = None,
    known_stock: Mapping[str, int] | None = None,
) -> CartView:
    """The cart as a shopper sees it: current prices (and whether they changed since each line
    was added), stock status per line, notices, and totals.

    Sums are in integer minor units; a line whose variant is gone, inactive, or priced in another
    currency than the cart is shown but not purchasable and is left out of the subtotal.
    ``known_variants`` and ``known_stock`` are variants and units available the caller has just
    read in this transaction; only the other lines' are read.
    """
    if cart is None:
        return CartView(None, None, (), 0, 0, format_minor(0, "EUR"), ())
    ids = [line.variant_id for line in cart.lines]
    variants = await _variants_of(session, ids, known_variants or {})
    stock = await _stock_of(session, ids, known_stock or {})
    views: list[CartLineView] = []
    notices: list[str] = []
    subtotal = 0
    for line in cart.lines:
        view = _line_view(
            line, variants.get(line.variant_id), stock, cart.currency, low_stock_threshold, notices
        )
        if view.purchasable:
            subtotal += _price_of(line, variants.get(line.variant_id)) * line.quantity
        views.append(view)
    return CartView(
        id=cart.id,
        currency=cart.currency,
        lines=tuple(views),
        item_count=sum(line.quantity for line in cart.lines),
        line_count=len(cart.lines),
        subtotal=format_minor(subtotal, cart.currency),
        notices=tuple(notices),
    )


async def _variants_of(
    session: AsyncSession, ids: list[str], known: Mapping[str, catalog.VariantInfo]
) -> dict[str, catalog.VariantInfo]:
    found = {i: known[i] for i in ids if i in known}
    missing = [i for i in ids if i not in known]
    if missing:
        found.update(await catalog.get_variants(session, missing))
    return found


async def _stock_of(
    session: AsyncSession, ids: list[str], known: Mapping[str, int]
) -> dict[str, int]:
    found = {i: known[i] for i in ids if i in known}
    missing = [i for i in ids if i not in known]
    if missing:
        found.update(await inventory.availability(session, missing))
    return found


def _price_of(line: CartLineInfo, variant: catalog.VariantInfo | None) -> int:
    return variant.price if variant is not None else line.unit_price_seen


def _line_view(
    line: CartLineInfo,
    variant: catalog.VariantInfo | None,
    stock: Mapping[str, int],
    cart_currency: str,
    low_stock_threshold: int,
    notices: list[str],
) -> CartLineView:
    seen = format_minor(line.unit_price_seen, line.currency)
    if variant is None:
        notices.append("An item in your cart is no longer sold and cannot be ordered.")
        return CartLineView(
            id=line.id,
            variant_id=line.variant_id,
            product_id=None,
            sku=None,
            title="Unavailable item",
            product_title="Unavailable item",
            options={},
            image=None,
            quantity=line.quantity,
            currency=line.currency,
            unit_price=seen,
            unit_price_seen=seen,
            price_changed=False,
            line_total=format_minor(line.unit_price_seen * line.quantity, line.currency),
            stock_status="out_of_stock",
            available=0,
            available_hint=None,
            purchasable=False,
            added_at=line.added_at,
        )
    name = _display_name(variant)
    purchasable = variant.active and variant.currency == cart_currency
    price_changed = (variant.price, variant.currency) != (line.unit_price_seen, line.currency)
    current = format_minor(variant.price, variant.currency)
    if not variant.active:
        notices.append(f"{name} is no longer available.")
    elif variant.currency != cart_currency:
        notices.append(f"{name} is priced in {variant.currency} and cannot be bought in this cart.")
    if price_changed:
        notices.append(
            f"The price of {name} changed from {seen} {line.currency} to "
            f"{current} {variant.currency} since you added it."
        )
    available = max(stock.get(line.variant_id, 0), 0) if purchasable else 0
    status = _stock_status(available, line.quantity)
    if purchasable and status == "out_of_stock":
        notices.append(f"{name} is out of stock.")
    elif status == "short":
        notices.append(f"Only {available} of {name} available; your cart has {line.quantity}.")
    hint = inventory.low_stock_hint(available, low_stock_threshold) if available > 0 else None
    return CartLineView(
        id=line.id,
        variant_id=line.variant_id,
        product_id=variant.product_id,
        sku=variant.sku,
        title=variant.title,
        product_title=variant.product_title,
        options=dict(variant.options),
        image=variant.image,
        quantity=line.quantity,
        currency=variant.currency,
        unit_price=current,
        unit_price_seen=seen,
        price_changed=price_changed,
        line_total=format_minor(variant.price * line.quantity, variant.currency),
        stock_status=status,
        available=None if status == "in_stock" else available,
        available_hint=hint,
        purchasable=purchasable,
        added_at=line.added_at,
    )


# --- locking and creating carts --------------------------------------------------------------


def _dialect(session: AsyncSession) -> str:
    return "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"


def _insert(session: AsyncSession, table: Any) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT (both have ``ON CONFLICT``)."""
    if _dialect(session) == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


_BUMP = update(carts).values(version=carts.c.version + 1, updated_at=bindparam("b_now"))
_BUMP_CUSTOMER = _BUMP.where(carts.c.user_id == bindparam("b_user")).returning(*carts.c)
_BUMP_GUEST = (
    _BUMP.where(*_LIVE_GUEST_CART, carts.c.expires_at > bindparam("b_now"))
    .values(expires_at=bindparam("b_expires"))
    .returning(*carts.c)
)


async def _bump(
    session: AsyncSession, owner: CartOwner, now: datetime, limits: CartLimits
) -> Row[Any] | None:
    """Bump the version of the owner's cart (taking its row lock); the updated row or None.

    A guest cart's expiry is pushed out; an expired guest cart is not touched (it is gone)."""
    if owner.user_id is not None:
        result = await session.execute(_BUMP_CUSTOMER, {"b_user": owner.user_id, "b_now": now})
    elif owner.guest_cart_id is not None:
        expires = now + timedelta(seconds=limits.guest_ttl_seconds)
        params = {"b_cart": owner.guest_cart_id, "b_now": now, "b_expires": expires}
        result = await session.execute(_BUMP_GUEST, params)
    else:
        return None
    return result.first()


async def _lock_cart(
    session: AsyncSession,
    owner: CartOwner,
    now: datetime,
    limits: CartLimits,
    *,
    create_currency: str | None = None,
) -> tuple[Row[Any] | None, bool]:
    """Lock the owner's cart for a change, creating it when ``create_currency`` is given.

    Returns (row, created); a guest token whose cart is gone raises ``invalid_cart_token``."""
    row = await _bump(session, owner, now, limits)
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
        created = await session.execute(_insert(session, carts).values(values).returning(*carts.c))
        return created.one(), True
    # Two devices of one customer may create the cart at once: one insert wins, both lock it.
    ins = (
        _insert(session, carts)
        .values(values)
        .on_conflict_do_nothing(index_elements=[carts.c.user_id])
    )
    inserted = (await session.execute(ins)).rowcount == 1  # type: ignore[attr-defined]
    row = await _bump(session, owner, now, limits)
    assert row is not None
    return row, inserted


def _add_line_statement(insert: Callable[[Table], Any]) -> Any:
    """Insert a line, or add to the variant's line unless that passes ``b_max``; RETURNING the
    line (no row when the maximum stopped it)."""
    ins = insert(cart_lines).values(
        id=bindparam("b_id"),
        cart_id=bindparam("b_cart"),
        variant_id=bindparam("b_variant"),
        quantity=bindparam("b_quantity"),
        unit_price_seen=bindparam("b_price"),
        currency=bindparam("b_currency"),
        added_at=bindparam("b_now"),
        updated_at=bindparam("b_now"),
    )
    total = cart_lines.c.quantity + ins.excluded.quantity
    return ins.on_conflict_do_update(
        index_elements=[cart_lines.c.cart_id, cart_lines.c.variant_id],
        set_={
            "quantity": total,
            "unit_price_seen": ins.excluded.unit_price_seen,
            "currency": ins.excluded.currency,
            "updated_at": ins.excluded.updated_at,
        },
        # The bound lives in the statement: no add can push a line past the maximum.
        where=total <= bindparam("b_max"),
    ).returning(*cart_lines.c)


_ADD_LINE = {
    "postgresql": _add_line_statement(postgresql.insert),
    "sqlite": _add_line_statement(sqlite.insert),
}
_SET_LINE_QUANTITY = (
    update(cart_lines)
    .where(cart_lines.c.id == bindparam("b_line"), cart_lines.c.cart_id == bindparam("b_cart"))
    .values(quantity=bindparam("b_quantity"), updated_at=bindparam("b_now"))
)


def _with_line(lines: tuple[CartLineInfo, ...], line: CartLineInfo) -> tuple[CartLineInfo, ...]:
    """``lines`` (in display order) with ``line`` in place of its variant's line, or inserted
    where the display order (added, then id) puts it."""
    if any(x.variant_id == line.variant_id for x in lines):
        return tuple(line if x.variant_id == line.variant_id else x for x in lines)
    key = (line.added_at, line.id)
    at = next((i for i, x in enumerate(lines) if (x.added_at, x.id) > key), len(lines))
    return (*lines[:at], line, *lines[at:])


async def _line_stats(session: AsyncSession, cart_id: str, variant_id: str) -> tuple[int, bool]:
    """(number of lines, whether the variant already has one)."""
    has_variant = func.coalesce(
        func.sum(case((cart_lines.c.variant_id == variant_id, 1), else_=0)), 0
    )
    row = (
        await session.execute(
            select(func.count(), has_variant).where(cart_lines.c.cart_id == cart_id)
        )
    ).one()
    return int(row[0]), int(row[1]) > 0


# --- changing carts --------------------------------------------------------------------------


async def add_item(
    session: AsyncSession,
    owner: CartOwner,
    variant_id: str,
    quantity: int,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange:
    """Add ``quantity`` of a variant (creating the cart on first add); an existing line grows.

    The stock check here is a fast pre-check: the real one is the reservation at checkout.
    Adding again refreshes the line's price seen, since the shopper has just seen that price.
    """
    _check_quantity(quantity, limits)
    variant = (await catalog.get_variants(session, [variant_id])).get(variant_id)
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
    available = (await inventory.availability(session, [variant_id])).get(variant_id, 0)
    if available < quantity:
        raise _out_of_stock(variant_id, variant.sku, max(available, 0), quantity)

    now = utcnow()
    row, created = await _lock_cart(session, owner, now, limits, create_currency=variant.currency)
    assert row is not None
    # A cart created just now has no lines yet; otherwise its lines are locked with it.
    lines = () if created else await _load_lines(session, row.id)
    has_line = any(line.variant_id == variant_id for line in lines)
    if not has_line and len(lines) >= limits.max_lines:
        raise Problem(
            422,
            "cart_full",
            f"A cart holds at most {limits.max_lines} different items",
            title="Cart full",
            max_lines=limits.max_lines,
        )
    cart = _cart_from_row(row)
    if cart.currency != variant.currency:
        if lines:
            raise Problem(
                422,
                "currency_mismatch",
                f"This cart is in {cart.currency}; {variant.sku} is priced in {variant.currency}",
                title="Currency mismatch",
            )
        await session.execute(
            update(carts).where(carts.c.id == row.id).values(currency=variant.currency)
        )
        cart = replace(cart, currency=variant.currency)

    params = {
        "b_id": new_id("cl"),
        "b_cart": row.id,
        "b_variant": variant_id,
        "b_quantity": quantity,
        "b_price": variant.price,
        "b_currency": variant.currency,
        "b_now": now,
        "b_max": limits.max_line_quantity,
    }
    added = (await session.execute(_ADD_LINE[_dialect(session)], params)).first()
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
        raise _out_of_stock(variant_id, variant.sku, max(available, 0), added.quantity)
    _invalidate(session, cache, row.id)
    return CartChange(
        row.id,
        created,
        cart=replace(cart, lines=_with_line(lines, _line_from_row(added))),
        variants={variant_id: variant},
        stock={variant_id: available},
    )


async def set_quantity(
    session: AsyncSession,
    owner: CartOwner,
    line_id: str,
    quantity: int,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange:
    """Set a line's quantity (1…max). Raising it needs the variant on sale and in stock;
    lowering it is always allowed."""
    _check_quantity(quantity, limits)
    now = utcnow()
    row, _ = await _lock_cart(session, owner, now, limits)
    if row is None:
        raise _line_not_found(line_id)
    lines = await _load_lines(session, row.id)
    line = next((x for x in lines if x.id == line_id), None)
    if line is None:
        raise _line_not_found(line_id)
    variants: dict[str, catalog.VariantInfo] = {}
    stock: dict[str, int] = {}
    if quantity > line.quantity:
        variant = (await catalog.get_variants(session, [line.variant_id])).get(line.variant_id)
        if variant is None or not variant.active:
            raise Problem(
                422,
                "variant_unavailable",
                "This item is no longer for sale; it can only be removed or reduced",
                title="Variant unavailable",
                variant_id=line.variant_id,
            )
        available = (await inventory.availability(session, [line.variant_id])).get(
            line.variant_id, 0
        )
        if quantity > available:
            raise _out_of_stock(line.variant_id, variant.sku, max(available, 0), quantity)
        variants[line.variant_id] = variant
        stock[line.variant_id] = available
    params = {"b_line": line_id, "b_cart": row.id, "b_quantity": quantity, "b_now": now}
    await session.execute(_SET_LINE_QUANTITY, params)
    _invalidate(session, cache, row.id)
    changed = replace(line, quantity=quantity, updated_at=now)
    return CartChange(
        row.id,
        cart=_cart_from_row(row, _with_line(lines, changed)),
        variants=variants,
        stock=stock,
    )


async def remove_item(
    session: AsyncSession,
    owner: CartOwner,
    line_id: str,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> CartChange:
    row, _ = await _lock_cart(session, owner, utcnow(), limits)
    if row is None:
        raise _line_not_found(line_id)
    result = await session.execute(
        delete(cart_lines).where(cart_lines.c.id == line_id, cart_lines.c.cart_id == row.id)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise _line_not_found(line_id)
    _invalidate(session, cache, row.id)
    return CartChange(row.id)


async def empty_cart(
    session: AsyncSession,
    owner: CartOwner,
    *,
    limits: CartLimits,
    cache: CartCache | None = None,
) -> str | None:
    """Remove every line of the owner's cart (the cart itself stays); its id, or None."""
    row, _ = await _lock_cart(session, owner, utcnow(), limits)
    if row is None:
        return None
    await session.execute(delete(cart_lines).where(cart_lines.c.cart_id == row.id))
    _invalidate(session, cache, row.id)
    return str(row.id)


async def clear_cart(session: AsyncSession, cart_id: str, *, cache: CartCache | None = None) -> int:
    """Remove every line of a cart by id (after an order is placed); how many were removed."""
    await session.execute(
        update(carts)
        .where(carts.c.id == cart_id)
        .values(version=carts.c.version + 1, updated_at=utcnow())
    )
    result = await session.execute(delete(cart_lines).where(cart_lines.c.cart_id == cart_id))
    _invalidate(session, cache, cart_id)
    return int(result.rowcount)  # type: ignore[attr-defined]


async def merge_carts(
    session: AsyncSession,
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
    guest = await _bump(session, CartOwner(guest_cart_id=guest_cart_id), now, limits)
    if guest is None:
        return None
    guest_lines = await _load_lines(session, guest_cart_id)
    if not guest_lines:
        await _delete_guest(session, guest_cart_id)
        _invalidate(session, cache, guest_cart_id)
        existing = await _find_cart_row(session, CartOwner(user_id=user_id), now)
        return str(existing.id) if existing is not None else None

    row, _ = await _lock_cart(
        session, CartOwner(user_id=user_id), now, limits, create_currency=guest.currency
    )
    assert row is not None
    line_count, _ = await _line_stats(session, row.id, guest_lines[0].variant_id)
    if line_count == 0 and row.currency != guest.currency:
        await session.execute(
            update(carts).where(carts.c.id == row.id).values(currency=guest.currency)
        )
    ins = _insert(session, cart_lines)
    higher = case(
        (ins.excluded.quantity > cart_lines.c.quantity, ins.excluded.quantity),
        else_=cart_lines.c.quantity,
    )
    upsert = ins.on_conflict_do_update(
        index_elements=[cart_lines.c.cart_id, cart_lines.c.variant_id],
        set_={"quantity": higher, "updated_at": ins.excluded.updated_at},
    )
    await session.execute(
        upsert,
        [
            {
                "id": new_id("cl"),
                "cart_id": row.id,
                "variant_id": line.variant_id,
                "quantity": min(line.quantity, limits.max_line_quantity),
                "unit_price_seen": line.unit_price_seen,
                "currency": line.currency,
                "added_at": line.added_at,
                "updated_at": now,
            }
            for line in guest_lines
        ],
    )
    await _delete_guest(session, guest_cart_id)
    _invalidate(session, cache, guest_cart_id, row.id)
    return str(row.id)


async def _delete_guest(session: AsyncSession, cart_id: str) -> None:
    await session.execute(delete(cart_lines).where(cart_lines.c.cart_id == cart_id))
    await session.execute(delete(carts).where(carts.c.id == cart_id, carts.c.user_id.is_(None)))


async def expire_guest_carts(
    session: AsyncSession, *, now: datetime | None = None, batch: int = 500
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
    ids = list((await session.execute(expired)).scalars())
    if not ids:
        return []
    # Re-check the expiry in the DELETE: a cart touched since the SELECT has a new expiry.
    result = await session.execute(
        delete(carts)
        .where(carts.c.id.in_(ids), carts.c.user_id.is_(None), carts.c.expires_at <= now)
        .returning(carts.c.id)
    )
    return [str(i) for i in result.scalars()]
