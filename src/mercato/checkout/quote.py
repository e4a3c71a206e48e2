"""Pricing a cart for checkout: the cart's lines at current catalog prices, everything else
a price depends on (destination, shipping method, tax rates, price setting, promo code), the
priced cart as the API shows it and as a checkout keeps it, and quotes.

:func:`mercato.checkout.pricing.price_cart` does the arithmetic; this module reads its inputs.
A quote has no side effects: nothing is reserved or used up.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

from mercato.cart import service as cart_service
from mercato.catalog import service as catalog
from mercato.checkout.arrival import Arrival, DeliveryClock, arrival_after
from mercato.checkout.common import normalize_country, normalize_region, percent_text
from mercato.checkout.delivery import dispatch_day_for
from mercato.checkout.pricing import (
    Destination,
    PricedCart,
    PricedLine,
    PricedPart,
    PriceLine,
    TaxTable,
    price_cart,
    shipping_cost,
)
from mercato.checkout.promos import (
    PromoGuard,
    PromoInfo,
    check_promo_usable,
    get_promo_by_code,
    normalize_promo_code,
    promo_attempt,
)
from mercato.checkout.setup_cache import PricingSetup, PricingSetupCache
from mercato.checkout.shipping import (
    ShippingMethodInfo,
    shipping_methods_for,
    unknown_shipping_method,
)
from mercato.checkout.tax import prices_include_tax, tax_table_for
from mercato.db import UnitOfWork, utcnow
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.marketplace import service as marketplace
from mercato.money import format_minor
from mercato.problems import Problem


async def _pricing_setup(uow: UnitOfWork, country: str) -> PricingSetup:
    generation = PricingSetupCache.generation  # before reading: a change meanwhile wins
    return PricingSetup(
        methods=tuple(await shipping_methods_for(uow, country)),
        tax_table=await tax_table_for(uow, country),
        prices_include_tax=await prices_include_tax(uow),
        generation=generation,
        loaded_at=time.monotonic(),
    )


# --------------------------------------------------------------------------------------------
# The cart as checkout sees it


@dataclass(frozen=True, slots=True)
class CartItem:
    """A cart line joined with its catalog variant (current price, tax class, weight)."""

    line_id: str
    variant_id: str
    product_id: str
    sku: str
    title: str
    options: dict[str, str]
    quantity: int
    unit_price: int
    unit_price_seen: int
    currency: str
    seen_currency: str
    tax_class: str
    weight_grams: int
    active: bool
    seller_id: str | None = None
    """A marketplace seller's line (``None``: the shop's own), at its offer's price."""
    seller_shipping: int = 0
    handling_days: int = 0
    warehouse_id: str | None = None
    """A seller's line: the seller's warehouse, the only one its units are held in."""

    @property
    def price_changed(self) -> bool:
        return (self.unit_price, self.currency) != (self.unit_price_seen, self.seen_currency)

    def price_line(self) -> PriceLine:
        return PriceLine(
            self.variant_id,
            self.quantity,
            self.unit_price,
            self.tax_class,
            self.weight_grams,
            self.seller_id,
            self.seller_shipping,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "line_id": self.line_id,
            "variant_id": self.variant_id,
            "product_id": self.product_id,
            "sku": self.sku,
            "title": self.title,
            "options": dict(self.options),
            "quantity": self.quantity,
            "unit_price": self.unit_price,
            "unit_price_seen": self.unit_price_seen,
            "currency": self.currency,
            "seen_currency": self.seen_currency,
            "tax_class": self.tax_class,
            "weight_grams": self.weight_grams,
            "active": self.active,
            "seller_id": self.seller_id,
            "seller_shipping": self.seller_shipping,
            "handling_days": self.handling_days,
            "warehouse_id": self.warehouse_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CartItem:
        return cls(
            line_id=str(data["line_id"]),
            variant_id=str(data["variant_id"]),
            product_id=str(data["product_id"]),
            sku=str(data["sku"]),
            title=str(data["title"]),
            options={str(k): str(v) for k, v in dict(data["options"]).items()},
            quantity=int(data["quantity"]),
            unit_price=int(data["unit_price"]),
            unit_price_seen=int(data["unit_price_seen"]),
            currency=str(data["currency"]),
            seen_currency=str(data["seen_currency"]),
            tax_class=str(data["tax_class"]),
            weight_grams=int(data["weight_grams"]),
            active=bool(data["active"]),
            seller_id=data.get("seller_id"),
            seller_shipping=int(data.get("seller_shipping") or 0),
            handling_days=int(data.get("handling_days") or 0),
            warehouse_id=data.get("warehouse_id"),
        )


def _display_title(variant: catalog.VariantInfo) -> str:
    if variant.title and variant.title != variant.product_title:
        return f"{variant.product_title} ({variant.title})"
    return variant.product_title


async def cart_items(
    uow: UnitOfWork,
    lines: Sequence[cart_service.CartLineInfo],
    country: str | None = None,
) -> list[CartItem]:
    """The cart's lines with their variants. A variant missing from the catalog is a 409
    ``variant_unavailable`` (it can only be removed from the cart). A marketplace seller's
    line is priced by its offer, buyable now for ``country`` (else the offer's 404 or 409
    ``offer_unavailable``)."""
    ids = [line.variant_id for line in lines]
    variants = await catalog.get_variants(uow, ids)
    gone = sorted(set(ids) - variants.keys())
    if gone:
        raise variant_unavailable(gone)
    items = []
    for line in lines:
        v = variants[line.variant_id]
        items.append(
            CartItem(
                line_id=line.id,
                variant_id=v.id,
                product_id=v.product_id,
                sku=v.sku,
                title=_display_title(v),
                options=dict(v.options),
                quantity=line.quantity,
                unit_price=v.price,
                unit_price_seen=line.unit_price_seen,
                currency=v.currency,
                seen_currency=line.currency,
                tax_class=v.tax_class,
                weight_grams=v.weight_grams,
                active=v.active,
            )
        )
        if line.seller_id is not None:
            items[-1] = await _seller_item(uow, items[-1], line.seller_id, country)
    return items


async def _seller_item(
    uow: UnitOfWork, item: CartItem, seller_id: str, country: str | None
) -> CartItem:
    offer = await marketplace.offer_for_line(uow, item.variant_id, seller_id, country)
    seller = await marketplace.get_seller(uow, offer.seller_id)
    return replace(
        item,
        seller_id=offer.seller_id,
        unit_price=offer.price,
        currency=offer.currency,
        seller_shipping=offer.shipping,
        handling_days=offer.handling_days,
        warehouse_id=seller.warehouse_id if seller is not None else None,
    )


def variant_unavailable(variant_ids: Sequence[str]) -> Problem:
    return Problem(
        409,
        "variant_unavailable",
        f"No longer for sale: {', '.join(variant_ids)}; remove them from the cart",
        title="Variant unavailable",
        variant_ids=list(variant_ids),
    )


def price_changes(items: Sequence[CartItem]) -> list[dict[str, Any]]:
    """The lines whose current price differs from the price the shopper saw."""
    return [
        {
            "line_id": i.line_id,
            "variant_id": i.variant_id,
            "sku": i.sku,
            "title": i.title,
            "currency": i.currency,
            "unit_price_seen": format_minor(i.unit_price_seen, i.seen_currency),
            "unit_price": format_minor(i.unit_price, i.currency),
        }
        for i in items
        if i.price_changed
    ]


def check_purchasable(items: Sequence[CartItem], currency: str) -> None:
    """Every line is on sale, in the cart's currency, at the price the shopper saw."""
    inactive = [i.variant_id for i in items if not i.active]
    if inactive:
        raise variant_unavailable(inactive)
    changed = price_changes(items)
    if changed:
        raise Problem(
            409,
            "price_changed",
            "Prices changed since these items were added; review the cart and check out again",
            title="Price changed",
            lines=changed,
        )
    if any(i.currency != currency for i in items):
        raise Problem(
            409,
            "currency_mismatch",
            f"Some items are no longer priced in {currency}; review the cart",
            title="Currency mismatch",
        )


# --------------------------------------------------------------------------------------------
# Pricing context and quotes


@dataclass(frozen=True, slots=True)
class PricingContext:
    """Everything besides the cart that a price depends on, read in one go."""

    destination: Destination
    method: ShippingMethodInfo
    tax_table: TaxTable
    promo: PromoInfo | None
    prices_include_tax: bool
    methods: tuple[ShippingMethodInfo, ...]
    """Every method shipping to the destination (the chosen one among them)."""


async def load_pricing_context(
    uow: UnitOfWork,
    *,
    country: str,
    region: str | None,
    shipping_method: str,
    promo_code: str | None,
    currency: str,
    now: datetime | None = None,
    cache: PricingSetupCache | None = None,
    promo_guard: PromoGuard | None = None,
    cart_id: str | None = None,
) -> PricingContext:
    """The pricing inputs for a destination. With ``cache`` (the checkout's), the shipping
    methods, tax rates and price setting may come from this process's recent copy. With
    ``promo_guard``, a promo code counts against the guessing allowance of the caller and of
    ``cart_id`` (see :class:`~mercato.checkout.promos.PromoGuard`)."""
    country = normalize_country(country, "shipping_address.country")
    region_key = normalize_region(region, "shipping_address.region")
    code = shipping_method.strip().lower()
    setup = cache.get(country) if cache is not None else None
    if setup is None or not any(m.code == code for m in setup.methods):
        setup = await _pricing_setup(uow, country)
        if cache is not None:
            cache.put(country, setup)
    found = [m for m in setup.methods if m.code == code]
    method = next((m for m in found if m.currency == currency), found[0] if found else None)
    if method is None:
        # Only a refused checkout pays for naming the countries the shop serves: when the
        # shop does not deliver there at all, that is the answer (422 country_not_served).
        await identity.check_served(uow, country, "shipping_address.country")
        raise unknown_shipping_method(shipping_method, country)
    promo = None
    if promo_code is not None and promo_code.strip():
        code_norm = normalize_promo_code(promo_code)
        if promo_guard is not None and cart_id is None:
            raise ValueError("a promo guard counts per cart: pass the cart's id")
        async with promo_attempt(promo_guard, cart_id or "", code_norm):
            promo = check_promo_usable(
                await get_promo_by_code(uow, code_norm),
                code_norm,
                currency=currency,
                now=now or utcnow(),
            )
    return PricingContext(
        destination=Destination(country, region_key or None),
        method=method,
        tax_table=setup.tax_table,
        promo=promo,
        prices_include_tax=setup.prices_include_tax,
        methods=setup.methods,
    )


def price_items(items: Sequence[CartItem], ctx: PricingContext, currency: str) -> PricedCart:
    return price_cart(
        [i.price_line() for i in items],
        currency=currency,
        shipping_method=ctx.method.rate(),
        address=ctx.destination,
        promo=ctx.promo.terms() if ctx.promo is not None else None,
        tax_table=ctx.tax_table,
        prices_include_tax=ctx.prices_include_tax,
    )


def priced_to_json(priced: PricedCart, items: Sequence[CartItem] | None = None) -> dict[str, Any]:
    """A priced cart as decimal strings (what the API shows)."""
    c = priced.currency
    by_variant = {i.variant_id: i for i in items or ()}
    lines = []
    for line in priced.lines:
        item = by_variant.get(line.variant_id)
        entry: dict[str, Any] = {
            "variant_id": line.variant_id,
            "quantity": line.quantity,
            "unit_price": format_minor(line.unit_price, c),
            "subtotal": format_minor(line.subtotal, c),
            "discount": format_minor(line.discount, c),
            "tax": format_minor(line.tax, c),
            "total": format_minor(line.total, c),
            "tax_rate": percent_text(line.tax_rate_bps),
        }
        if item is not None:
            entry |= {"sku": item.sku, "title": item.title, "options": dict(item.options)}
        lines.append(entry)
    return {
        "currency": c,
        "lines": lines,
        "subtotal": format_minor(priced.subtotal, c),
        "discount": format_minor(priced.discount, c),
        "shipping": format_minor(priced.shipping, c),
        "shipping_tax": format_minor(priced.shipping_tax, c),
        "tax": format_minor(priced.tax, c),
        "total": format_minor(priced.total, c),
        "prices_include_tax": priced.prices_include_tax,
        "shipping_method": priced.shipping_method,
        "promo_code": priced.promo_code,
        "weight_grams": priced.weight_grams,
    }


def priced_to_minor(priced: PricedCart) -> dict[str, Any]:
    """A priced cart in minor units, losslessly (what a checkout keeps to build the order)."""
    return {
        "currency": priced.currency,
        "lines": [
            {
                "variant_id": x.variant_id,
                "quantity": x.quantity,
                "unit_price": x.unit_price,
                "subtotal": x.subtotal,
                "discount": x.discount,
                "tax": x.tax,
                "total": x.total,
                "tax_rate_bps": x.tax_rate_bps,
                "seller_id": x.seller_id,
            }
            for x in priced.lines
        ],
        "parts": [[p.seller_id, p.shipping, p.shipping_tax] for p in priced.parts],
        "subtotal": priced.subtotal,
        "discount": priced.discount,
        "shipping": priced.shipping,
        "shipping_tax": priced.shipping_tax,
        "tax": priced.tax,
        "total": priced.total,
        "prices_include_tax": priced.prices_include_tax,
        "weight_grams": priced.weight_grams,
        "shipping_method": priced.shipping_method,
        "promo_code": priced.promo_code,
    }


def priced_from_minor(data: Mapping[str, Any]) -> PricedCart:
    return PricedCart(
        currency=str(data["currency"]),
        lines=tuple(
            PricedLine(
                variant_id=str(x["variant_id"]),
                quantity=int(x["quantity"]),
                unit_price=int(x["unit_price"]),
                subtotal=int(x["subtotal"]),
                discount=int(x["discount"]),
                tax=int(x["tax"]),
                total=int(x["total"]),
                tax_rate_bps=int(x["tax_rate_bps"]),
                seller_id=x.get("seller_id"),
            )
            for x in data["lines"]
        ),
        parts=tuple(PricedPart(s, int(a), int(t)) for s, a, t in data.get("parts") or ()),
        subtotal=int(data["subtotal"]),
        discount=int(data["discount"]),
        shipping=int(data["shipping"]),
        shipping_tax=int(data["shipping_tax"]),
        tax=int(data["tax"]),
        total=int(data["total"]),
        prices_include_tax=bool(data["prices_include_tax"]),
        weight_grams=int(data["weight_grams"]),
        shipping_method=str(data["shipping_method"]),
        promo_code=data.get("promo_code"),
    )


@dataclass(frozen=True, slots=True)
class Quote:
    priced: PricedCart
    items: tuple[CartItem, ...]
    method: ShippingMethodInfo
    price_changes: tuple[dict[str, Any], ...]
    methods: tuple[ShippingMethodInfo, ...] = ()
    """The other methods the cart could ship with (see :func:`shipping_options`)."""
    country: str = ""
    """The destination quoted for."""
    not_deliverable: tuple[CartItem, ...] = ()
    """Lines whose stock is all in warehouses that do not ship to the quote's country: a
    checkout there refuses them (409 ``not_deliverable``)."""

    ships_on: date | None = None
    """The business day the parcel would leave (asked for with a delivery clock, and known
    when every line can reach the destination)."""

    @property
    def arrives(self) -> Arrival | None:
        """When the parcel would arrive with the quoted method."""
        if self.ships_on is None:
            return None
        return arrival_after(self.ships_on, self.method.min_days, self.method.max_days)


async def quote_cart(
    uow: UnitOfWork,
    cart: cart_service.CartInfo | None,
    *,
    country: str,
    region: str | None,
    shipping_method: str,
    promo_code: str | None,
    promo_guard: PromoGuard | None = None,
    delivery: DeliveryClock | None = None,
) -> Quote:
    """Price a cart at current catalog prices, without side effects. Lines whose variant is no
    longer on sale are a 409 ``variant_unavailable``; changed prices are listed, not refused
    (the shopper is looking at the cart; checkout itself refuses them). A shopper's promo
    code goes through ``promo_guard`` (429 ``rate_limited`` once too many did not apply).
    With ``delivery`` (the shop's working calendar), the quote knows when the parcel would
    leave, so its methods say when it would arrive."""
    if cart is None or not cart.lines:
        raise cart_empty()
    country = await identity.check_served(uow, country, "shipping_address.country")
    items = await cart_items(uow, cart.lines)
    inactive = [i.variant_id for i in items if not i.active]
    if inactive:
        raise variant_unavailable(inactive)
    ctx = await load_pricing_context(
        uow,
        country=country,
        region=region,
        shipping_method=shipping_method,
        promo_code=promo_code,
        currency=cart.currency,
        promo_guard=promo_guard,
        cart_id=cart.id,
    )
    priced = price_items(items, ctx, cart.currency)
    others = tuple(m for m in ctx.methods if m.currency == cart.currency)
    ships_on = None
    if delivery is not None:
        wanted = _units_per_variant(items)
        ships_on = await dispatch_day_for(uow, wanted, ctx.destination.country, delivery)
    out_of_reach = await out_of_reach_of(uow, items, ctx.destination.country)
    return Quote(
        priced,
        tuple(items),
        ctx.method,
        tuple(price_changes(items)),
        others,
        country=ctx.destination.country,
        not_deliverable=out_of_reach,
        ships_on=ships_on,
    )


def _units_per_variant(items: Sequence[CartItem]) -> dict[str, int]:
    """Lines of one variant draw on the same stock, so a warehouse must hold their sum."""
    total: dict[str, int] = {}
    for i in items:
        total[i.variant_id] = total.get(i.variant_id, 0) + i.quantity
    return total


async def out_of_reach_of(
    uow: UnitOfWork, items: Sequence[CartItem], country: str
) -> tuple[CartItem, ...]:
    """The lines no warehouse shipping to ``country`` has, though others do (one read)."""
    spreads = await inventory.stock_spreads(uow, [i.variant_id for i in items])
    return tuple(
        i
        for i in items
        if spreads.get(i.variant_id, inventory.StockSpread()).only_elsewhere(country)
    )


async def estimate_cart(
    uow: UnitOfWork,
    cart: cart_service.CartInfo | None,
    country: str,
    delivery: DeliveryClock | None = None,
) -> Quote | None:
    """The cart page's estimate of shipping and tax for a destination: the cart quoted with
    the first shipping method that serves it; None when nothing can be priced (an empty cart,
    nothing purchasable, no method for the country): the page still shows the lines and their
    notices."""
    if cart is None or not cart.lines or not country:
        return None
    methods = await shipping_methods_for(uow, country, currency=cart.currency)
    if not methods:
        return None
    try:
        return await quote_cart(
            uow,
            cart,
            country=country,
            region=None,
            shipping_method=methods[0].code,
            promo_code=None,
            delivery=delivery,
        )
    except Problem:
        return None


def cart_empty() -> Problem:
    return Problem(422, "cart_empty", "The cart is empty", title="Cart empty")


@dataclass(frozen=True, slots=True)
class ShippingOption:
    method: ShippingMethodInfo
    cost: int | None
    """What the method would charge for the quoted cart; None when it cannot carry the parcel
    or the cart could not be priced."""
    arrives: Arrival | None = None
    """When the parcel would arrive with it; None when that is not known (see
    :attr:`Quote.ships_on`)."""


def shipping_options(
    methods: Sequence[ShippingMethodInfo], quote: Quote | None
) -> list[ShippingOption]:
    """Each method with what it would cost for the quoted cart (its weight, and its goods
    after the discount, which is what a free-shipping threshold looks at)."""
    if quote is None:
        return [ShippingOption(m, None) for m in methods]
    goods = quote.priced.subtotal - quote.priced.discount
    weight = quote.priced.weight_grams
    ships_on = quote.ships_on
    return [
        ShippingOption(
            m,
            shipping_cost(m.rate(), weight, goods),
            None if ships_on is None else arrival_after(ships_on, m.min_days, m.max_days),
        )
        for m in methods
    ]


def option_to_json(option: ShippingOption) -> dict[str, Any]:
    m = option.method
    return {
        "code": m.code,
        "name": m.name,
        "price": None if option.cost is None else format_minor(option.cost, m.currency),
        "delivery_days": {"min": m.min_days, "max": m.max_days},
        "arrives": None if option.arrives is None else option.arrives.to_json(),
    }
