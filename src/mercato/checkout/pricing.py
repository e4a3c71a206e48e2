"""Pricing a cart: goods, discount, shipping and tax, as a pure function of plain data.

:func:`price_cart` does no I/O and reads no clock: the same inputs always give the same
:class:`PricedCart`. The cart view (through ``POST /api/checkout/quote``) and the checkout
workflow both call it, so a shopper is charged what was quoted.

Money is int minor units throughout. The rules, in order:

1. **Goods.** Each line's ``subtotal`` is ``unit_price * quantity``; the cart's ``subtotal`` is
   their sum. Prices are the shop's prices as configured: tax-inclusive (``prices_include_tax``,
   European style) or tax-exclusive (net prices, tax added on top).
2. **Discount.** A ``percent`` promo takes ``subtotal * value / 10000`` rounded half-up (value in
   basis points, at most 10000, so it never exceeds the subtotal); a ``fixed`` promo takes its
   value, capped at the subtotal. The discount applies to goods only, never to shipping, and is
   spread over the lines in proportion to their subtotals with the largest-remainder method:
   each line first gets the floor of its exact share, and the units left over go one each to the
   lines with the largest remainders (ties: the earlier line). Line discounts therefore add up to
   the order discount exactly, and no line is discounted below zero.
3. **Shipping.** From the chosen method: ``flat`` is its amount; ``weight_band`` the amount of
   the first band the parcel's total weight fits; and whenever ``free_over`` is set, shipping is
   free once the discounted goods total reaches it.
4. **Tax.** Per line, on the discounted line amount, at the rate for the destination (a region's
   own rate wins over the country's) and the line's tax class (a class without a rate falls back
   to the country's ``standard`` rate; a country without rates is not taxed). The tax of each
   line is rounded **half-up to the minor unit on its own** (and so is the shipping's, taxed at
   its method's tax class): the order's tax is the sum of those rounded figures, which is what
   the order lines show, so lines always add up to the order.

   * tax-exclusive: ``tax = round(base * rate / 10000)`` and is added to the line;
   * tax-inclusive: the price already contains it: ``tax = round(base * rate / (10000 + rate))``
     and the line total stays ``base``.
5. **Totals.** ``total = subtotal - discount + shipping`` (+ ``tax`` when prices are exclusive).
   Every figure is a non-negative integer; line totals plus the shipping total equal ``total``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from mercato.problems import Problem

BPS = 10_000
STANDARD = "standard"

ShippingKind = Literal["flat", "weight_band", "free_over"]
PromoKind = Literal["percent", "fixed"]


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PriceLine:
    """One cart line as pricing needs it."""

    variant_id: str
    quantity: int
    unit_price: int
    tax_class: str = STANDARD
    weight_grams: int = 0
    seller_id: str | None = None
    """A marketplace seller's line (``None``: the shop's own)."""
    seller_shipping: int = 0
    """A seller's line: its offer's flat shipping fee."""


@dataclass(frozen=True, slots=True)
class WeightBand:
    """Parcels up to ``up_to_grams`` (``None``: any weight) ship for ``amount``."""

    up_to_grams: int | None
    amount: int


@dataclass(frozen=True, slots=True)
class ShippingRate:
    code: str
    name: str
    kind: ShippingKind
    amount: int
    currency: str
    free_over: int | None = None
    weight_bands: tuple[WeightBand, ...] = ()
    tax_class: str = STANDARD


@dataclass(frozen=True, slots=True)
class Destination:
    country: str
    region: str | None = None


@dataclass(frozen=True, slots=True)
class PromoTerms:
    code: str
    kind: PromoKind
    value: int
    min_subtotal: int = 0


@dataclass(frozen=True, slots=True)
class TaxTable:
    """Rates in basis points keyed by (country, region or ``""``, tax class)."""

    rates: Mapping[tuple[str, str, str], int] = field(default_factory=dict)

    def rate_for(self, country: str, region: str | None, tax_class: str) -> int:
        for key in (
            (country, region or "", tax_class),
            (country, "", tax_class),
            (country, region or "", STANDARD),
            (country, "", STANDARD),
        ):
            rate = self.rates.get(key)
            if rate is not None:
                return rate
        return 0


# --- outputs ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PricedLine:
    variant_id: str
    quantity: int
    unit_price: int
    subtotal: int
    discount: int
    tax: int
    total: int
    tax_rate_bps: int
    seller_id: str | None = None


@dataclass(frozen=True, slots=True)
class PricedPart:
    """One seller's parcel: its shipping (as the cart's ``shipping``) and that shipping's tax."""

    seller_id: str | None
    shipping: int
    shipping_tax: int


@dataclass(frozen=True, slots=True)
class PricedCart:
    currency: str
    lines: tuple[PricedLine, ...]
    subtotal: int
    discount: int
    shipping: int
    shipping_tax: int
    tax: int
    total: int
    prices_include_tax: bool
    weight_grams: int
    shipping_method: str
    promo_code: str | None
    parts: tuple[PricedPart, ...] = ()
    """One per seller of the lines (the house's first); their shipping adds up to the cart's."""

    @property
    def shipping_total(self) -> int:
        """What the shipping adds to the total (its tax included)."""
        return self.shipping if self.prices_include_tax else self.shipping + self.shipping_tax


# --- arithmetic ------------------------------------------------------------------------------


def div_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded half-up, for a non-negative numerator."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("div_half_up needs numerator >= 0 and denominator > 0")
    return (2 * numerator + denominator) // (2 * denominator)


def allocate(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` over ``weights`` proportionally by largest remainder: the parts sum to
    ``total`` exactly, each part is within 1 of its exact share, and a zero weight gets 0."""
    if total < 0 or any(w < 0 for w in weights):
        raise ValueError("allocate needs non-negative amounts")
    whole = sum(weights)
    if whole == 0 or total == 0:
        return [0] * len(weights)
    parts = [total * w // whole for w in weights]
    remainders = [total * w % whole for w in weights]
    left = total - sum(parts)
    for i in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:left]:
        parts[i] += 1
    return parts


def tax_of(base: int, rate_bps: int, *, inclusive: bool) -> int:
    """The tax in ``base`` (inclusive) or on ``base`` (exclusive), rounded half-up."""
    if inclusive:
        return div_half_up(base * rate_bps, BPS + rate_bps)
    return div_half_up(base * rate_bps, BPS)


def promo_discount(promo: PromoTerms, subtotal: int) -> int:
    """The order discount a promo gives on ``subtotal`` (0 ≤ discount ≤ subtotal)."""
    if promo.kind == "percent":
        return min(subtotal, div_half_up(subtotal * min(promo.value, BPS), BPS))
    return min(promo.value, subtotal)


def shipping_cost(method: ShippingRate, weight_grams: int, goods_total: int) -> int | None:
    """What the method charges for this parcel, or ``None`` when it cannot carry it."""
    if method.free_over is not None and goods_total >= method.free_over:
        return 0
    if method.kind != "weight_band":
        return method.amount
    for band in method.weight_bands:
        if band.up_to_grams is None or weight_grams <= band.up_to_grams:
            return band.amount
    return None


# --- the function ----------------------------------------------------------------------------


def price_cart(
    lines: Sequence[PriceLine],
    *,
    currency: str,
    shipping_method: ShippingRate,
    address: Destination,
    promo: PromoTerms | None,
    tax_table: TaxTable,
    prices_include_tax: bool,
) -> PricedCart:
    """Price ``lines`` for ``address`` (see the module docstring for every rule).

    Raises a 422 :class:`~mercato.problems.Problem` when the cart cannot be priced as asked:
    ``invalid_promo_code`` (subtotal under the promo's minimum), ``shipping_method_unavailable``
    (the parcel fits none of the method's weight bands, or the method is priced in another
    currency), ``validation_error`` (a line with a non-positive quantity or a negative price).
    """
    for i, line in enumerate(lines):
        if line.quantity <= 0:
            raise Problem(422, "validation_error", f"lines[{i}]: quantity must be positive")
        if line.unit_price < 0 or line.weight_grams < 0:
            raise Problem(422, "validation_error", f"lines[{i}]: amounts must not be negative")
    if shipping_method.currency != currency:
        raise _shipping_unavailable(
            shipping_method.code, f"it is priced in {shipping_method.currency}, not {currency}"
        )

    subtotals = [line.unit_price * line.quantity for line in lines]
    subtotal = sum(subtotals)
    weight = sum(line.weight_grams * line.quantity for line in lines)

    discount = 0
    if promo is not None:
        if subtotal < promo.min_subtotal:
            raise Problem(
                422,
                "invalid_promo_code",
                f"The code {promo.code} needs goods worth at least {promo.min_subtotal} "
                f"(minor units); the cart has {subtotal}",
                title="Invalid promo code",
                reason="min_subtotal",
                min_subtotal=promo.min_subtotal,
                errors=[{"field": "promo_code", "message": "minimum not reached", "type": "promo"}],
            )
        discount = promo_discount(promo, subtotal)
    line_discounts = allocate(discount, subtotals)

    inclusive = prices_include_tax
    priced: list[PricedLine] = []
    for line, line_subtotal, line_discount in zip(lines, subtotals, line_discounts, strict=True):
        base = line_subtotal - line_discount
        rate = tax_table.rate_for(address.country, address.region, line.tax_class)
        tax = tax_of(base, rate, inclusive=inclusive)
        priced.append(
            PricedLine(
                variant_id=line.variant_id,
                quantity=line.quantity,
                unit_price=line.unit_price,
                subtotal=line_subtotal,
                discount=line_discount,
                tax=tax,
                total=base if inclusive else base + tax,
                tax_rate_bps=rate,
                seller_id=line.seller_id,
            )
        )

    goods = subtotal - discount
    shipping_rate = tax_table.rate_for(address.country, address.region, shipping_method.tax_class)
    parts = _parcels(lines, priced, shipping_method, shipping_rate, inclusive)
    shipping = sum(p.shipping for p in parts)
    shipping_tax = sum(p.shipping_tax for p in parts)

    tax = sum(p.tax for p in priced) + shipping_tax
    total = goods + shipping + (0 if inclusive else tax)
    return PricedCart(
        currency=currency,
        lines=tuple(priced),
        subtotal=subtotal,
        discount=discount,
        shipping=shipping,
        shipping_tax=shipping_tax,
        tax=tax,
        total=total,
        prices_include_tax=inclusive,
        weight_grams=weight,
        shipping_method=shipping_method.code,
        promo_code=promo.code if promo is not None else None,
        parts=tuple(parts),
    )


def _parcels(
    lines: Sequence[PriceLine],
    priced: Sequence[PricedLine],
    method: ShippingRate,
    rate: int,
    inclusive: bool,
) -> list[PricedPart]:
    """6. **Sellers.** The shop's own lines ship by the chosen method (its weight bands and
    free-over threshold see those lines only); each marketplace seller ships its lines as one
    parcel charged the highest flat fee among its offers. Every parcel's shipping is taxed at
    the chosen method's tax class."""
    sellers = list(dict.fromkeys(line.seller_id for line in lines))
    if None in sellers:
        sellers.remove(None)
    found: list[PricedPart] = []
    house = [(x, p) for x, p in zip(lines, priced, strict=True) if x.seller_id is None]
    if house or not sellers:
        weight = sum(x.weight_grams * x.quantity for x, _ in house)
        goods = sum(p.subtotal - p.discount for _, p in house)
        cost = shipping_cost(method, weight, goods)
        if cost is None:
            raise _shipping_unavailable(method.code, f"the parcel ({weight} g) is too heavy for it")
        found.append(PricedPart(None, cost, tax_of(cost, rate, inclusive=inclusive)))
    for seller in sellers:
        cost = max(x.seller_shipping for x in lines if x.seller_id == seller)
        found.append(PricedPart(seller, cost, tax_of(cost, rate, inclusive=inclusive)))
    return found


def _shipping_unavailable(code: str, why: str) -> Problem:
    return Problem(
        422,
        "shipping_method_unavailable",
        f"The shipping method {code!r} cannot be used: {why}",
        title="Shipping method unavailable",
        errors=[{"field": "shipping_method", "message": why, "type": "shipping"}],
    )
