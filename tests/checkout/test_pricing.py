"""price_cart: worked examples, and Hypothesis properties over arbitrary carts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.checkout.pricing import (
    Destination,
    PricedCart,
    PriceLine,
    PromoTerms,
    ShippingRate,
    TaxTable,
    WeightBand,
    allocate,
    div_half_up,
    price_cart,
)
from mercato.problems import Problem

DE = Destination("DE")
TAX = TaxTable(
    {
        ("DE", "", "standard"): 1900,
        ("DE", "", "reduced"): 700,
        ("US", "CA", "standard"): 725,
        ("US", "", "standard"): 0,
    }
)
STANDARD = ShippingRate("standard", "Standard", "free_over", 490, "EUR", free_over=5000)
FLAT = ShippingRate("flat", "Flat", "flat", 500, "EUR")
EXPRESS = ShippingRate(
    "express",
    "Express",
    "weight_band",
    0,
    "EUR",
    weight_bands=(WeightBand(1000, 990), WeightBand(5000, 1490)),
)


def price(
    lines: list[PriceLine],
    *,
    method: ShippingRate = FLAT,
    promo: PromoTerms | None = None,
    inclusive: bool = True,
    address: Destination = DE,
) -> PricedCart:
    return price_cart(
        lines,
        currency="EUR",
        shipping_method=method,
        address=address,
        promo=promo,
        tax_table=TAX,
        prices_include_tax=inclusive,
    )


def test_tax_inclusive_prices_contain_the_tax_rounded_per_line() -> None:
    priced = price_cart(
        [PriceLine("a", 1, 1999), PriceLine("b", 3, 1000, "reduced")],
        currency="EUR",
        shipping_method=FLAT,
        address=DE,
        promo=None,
        tax_table=TAX,
        prices_include_tax=True,
    )
    # 19.99 incl. 19 %: 1999 * 1900 / 11900 = 319.16 -> 319; 30.00 incl. 7 %: 196.26 -> 196;
    # shipping 5.00 incl. 19 %: 79.83 -> 80.
    assert [line.tax for line in priced.lines] == [319, 196]
    assert priced.shipping_tax == 80
    assert priced.tax == 319 + 196 + 80
    assert priced.total == 1999 + 3000 + 500
    assert [line.total for line in priced.lines] == [1999, 3000]


def test_tax_exclusive_prices_get_the_tax_added() -> None:
    priced = price_cart(
        [PriceLine("a", 2, 1050)],
        currency="EUR",
        shipping_method=FLAT,
        address=DE,
        promo=None,
        tax_table=TAX,
        prices_include_tax=False,
    )
    # 21.00 * 19 % = 3.99; shipping 5.00 * 19 % = 0.95.
    assert priced.lines[0].tax == 399 and priced.lines[0].total == 2499
    assert priced.shipping_tax == 95
    assert priced.total == 2100 + 399 + 500 + 95


def test_half_up_rounding_in_minor_units() -> None:
    assert div_half_up(5, 10) == 1  # 0.5 -> 1
    assert div_half_up(4, 10) == 0
    assert div_half_up(15, 10) == 2
    assert div_half_up(25, 10) == 3  # half-up, not banker's rounding


def test_region_rate_wins_and_unknown_class_falls_back_to_standard() -> None:
    assert TAX.rate_for("US", "CA", "standard") == 725
    assert TAX.rate_for("US", "NY", "standard") == 0
    assert TAX.rate_for("DE", None, "luxury") == 1900
    assert TAX.rate_for("ZZ", None, "standard") == 0


def test_discount_is_spread_by_largest_remainder() -> None:
    priced = price_cart(
        [PriceLine("a", 1, 1000), PriceLine("b", 1, 1000), PriceLine("c", 1, 1000)],
        currency="EUR",
        shipping_method=FLAT,
        address=DE,
        promo=PromoTerms("TEN", "fixed", 100),
        tax_table=TAX,
        prices_include_tax=True,
    )
    # 100 over three equal lines: 33 each and the leftover unit to the first line.
    assert [line.discount for line in priced.lines] == [34, 33, 33]
    assert priced.discount == 100
    # 2.5 and 7.5: equal remainders, the earlier line gets the leftover unit.
    assert allocate(10, [1, 0, 3]) == [3, 0, 7]


def test_fixed_discount_is_capped_at_the_goods() -> None:
    priced = price_cart(
        [PriceLine("a", 1, 300)],
        currency="EUR",
        shipping_method=FLAT,
        address=DE,
        promo=PromoTerms("BIG", "fixed", 5000),
        tax_table=TAX,
        prices_include_tax=True,
    )
    assert priced.discount == 300
    assert priced.lines[0].total == 0 and priced.lines[0].tax == 0
    assert priced.total == 500  # shipping only


def test_minimum_subtotal_refuses_the_promo() -> None:
    with pytest.raises(Problem) as caught:
        price_cart(
            [PriceLine("a", 1, 2000)],
            currency="EUR",
            shipping_method=FLAT,
            address=DE,
            promo=PromoTerms("SAVE5", "fixed", 500, min_subtotal=3000),
            tax_table=TAX,
            prices_include_tax=True,
        )
    assert caught.value.code == "invalid_promo_code"
    assert caught.value.extra["reason"] == "min_subtotal"


def test_free_shipping_over_the_threshold_after_discount() -> None:
    lines = [PriceLine("a", 1, 5200)]
    common = {
        "currency": "EUR",
        "shipping_method": STANDARD,
        "address": DE,
        "tax_table": TAX,
        "prices_include_tax": True,
    }
    assert price_cart(lines, promo=None, **common).shipping == 0  # type: ignore[arg-type]
    discounted = price_cart(lines, promo=PromoTerms("P", "percent", 1000), **common)  # type: ignore[arg-type]
    assert discounted.shipping == 490  # 46.80 after the discount is under 50.00


def test_weight_bands() -> None:
    def cost(weight: int) -> int:
        return price_cart(
            [PriceLine("a", 1, 1000, weight_grams=weight)],
            currency="EUR",
            shipping_method=EXPRESS,
            address=DE,
            promo=None,
            tax_table=TAX,
            prices_include_tax=True,
        ).shipping

    assert cost(1000) == 990
    assert cost(1001) == 1490
    with pytest.raises(Problem) as caught:
        cost(5001)
    assert caught.value.code == "shipping_method_unavailable"


def test_the_same_inputs_give_the_same_answer() -> None:
    lines = [PriceLine("a", 3, 333, "reduced", 10), PriceLine("b", 7, 1234)]
    promo = PromoTerms("X", "percent", 1234)
    assert price(lines, promo=promo) == price(lines, promo=promo)


# --- properties ------------------------------------------------------------------------------

line_st = st.builds(
    PriceLine,
    variant_id=st.text(alphabet="abcdef", min_size=1, max_size=4),
    quantity=st.integers(1, 99),
    unit_price=st.integers(0, 1_000_000),
    tax_class=st.sampled_from(["standard", "reduced", "zero"]),
    weight_grams=st.integers(0, 5000),
)
promo_st = st.none() | st.builds(
    PromoTerms,
    code=st.just("P"),
    kind=st.sampled_from(["percent", "fixed"]),
    value=st.integers(1, 10_000),
    min_subtotal=st.just(0),
)
method_st = st.sampled_from([STANDARD, FLAT])
table_st = st.builds(
    lambda std, red: TaxTable({("DE", "", "standard"): std, ("DE", "", "reduced"): red}),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(line_st, min_size=1, max_size=8),
    promo=promo_st,
    method=method_st,
    table=table_st,
    inclusive=st.booleans(),
)
def test_totals_add_up_exactly_and_are_never_negative(
    lines: list[PriceLine],
    promo: PromoTerms | None,
    method: ShippingRate,
    table: TaxTable,
    inclusive: bool,
) -> None:
    priced = price_cart(
        lines,
        currency="EUR",
        shipping_method=method,
        address=DE,
        promo=promo,
        tax_table=table,
        prices_include_tax=inclusive,
    )
    figures = [priced.subtotal, priced.discount, priced.shipping, priced.tax, priced.total]
    assert all(f >= 0 for f in figures)
    for line, given_line in zip(priced.lines, lines, strict=True):
        assert line.subtotal == given_line.unit_price * given_line.quantity
        assert 0 <= line.discount <= line.subtotal
        assert line.tax >= 0 and line.total >= 0
        assert line.total == line.subtotal - line.discount + (0 if inclusive else line.tax)
    assert sum(x.subtotal for x in priced.lines) == priced.subtotal
    assert sum(x.discount for x in priced.lines) == priced.discount
    assert sum(x.tax for x in priced.lines) + priced.shipping_tax == priced.tax
    assert sum(x.total for x in priced.lines) + priced.shipping_total == priced.total
    assert priced.discount <= priced.subtotal
    if inclusive:
        assert priced.tax <= priced.total


@settings(max_examples=300, deadline=None)
@given(
    subtotals=st.lists(st.integers(0, 10**9), min_size=1, max_size=10),
    percent=st.integers(1, 10_000),
)
def test_percentage_discount_never_exceeds_the_subtotal(subtotals: list[int], percent: int) -> None:
    lines = [PriceLine(f"v{i}", 1, s) for i, s in enumerate(subtotals)]
    priced = price(lines, promo=PromoTerms("P", "percent", percent))
    assert 0 <= priced.discount <= priced.subtotal
    if percent == 10_000:
        assert priced.discount == priced.subtotal


@settings(max_examples=300, deadline=None)
@given(
    total=st.integers(0, 10**9), weights=st.lists(st.integers(0, 10**7), min_size=1, max_size=12)
)
def test_allocation_sums_exactly_and_stays_within_one_of_the_share(
    total: int, weights: list[int]
) -> None:
    parts = allocate(total, weights)
    whole = sum(weights)
    if whole == 0:
        assert parts == [0] * len(weights)
        return
    assert sum(parts) == total
    for part, weight in zip(parts, weights, strict=True):
        exact = total * weight / whole
        assert abs(part - exact) < 1
        if weight == 0:
            assert part == 0


def test_the_destination_is_the_asked_one_if_shipped_to_else_the_default_else_the_first() -> None:
    from mercato.checkout.service import choose_country

    assert choose_country(["AT", "DE", "FR"], "fr", "DE") == "FR"
    assert choose_country(["AT", "DE", "FR"], "US", "DE") == "DE"
    assert choose_country(["AT", "FR"], None, "DE") == "AT"
    assert choose_country([], "DE", "DE") == ""
