"""Demo checkout setup: shipping zones and methods, tax rates, the price setting, promo codes.

The demo shop sells in the shop's currency (``MERCATO_CURRENCY``, EUR by default) with
**tax-inclusive** prices (catalog prices are what a European shopper pays, VAT included). The
figures below are euro figures, set up as the like round figures of the shop's currency
(:func:`mercato.money.local_figure`: 4.90 EUR is 4.90 GBP or ¥490). Every country the demo
warehouses ship to gets ``standard`` (4.90, free from 50.00) and ``express`` (by weight)
shipping. Tax rates are the standard VAT rate of each country plus a ``reduced`` class, used
for books, at that country's book rate; they are demonstration figures, to be checked before
real use. Seeding twice changes nothing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from mercato.checkout import service
from mercato.checkout.models import methods, zones
from mercato.db import Database, utcnow
from mercato.money import local_figure

# Zone name → countries. Together: every country the demo warehouses ship to.
ZONES: dict[str, tuple[str, ...]] = {
    "European Union": (
        "AT",
        "BE",
        "CZ",
        "DE",
        "DK",
        "ES",
        "FR",
        "IE",
        "IT",
        "LU",
        "NL",
        "PL",
        "PT",
        "SE",
    ),
    "United Kingdom": ("GB",),
    "Rest of Europe": ("CH", "MC"),
}

# Country → (standard rate, reduced rate for books), in basis points.
TAX_RATES: dict[str, tuple[int, int]] = {
    "AT": (2000, 1000),
    "BE": (2100, 600),
    "CH": (810, 260),
    "CZ": (2100, 1200),
    "DE": (1900, 700),
    "DK": (2500, 2500),
    "ES": (2100, 400),
    "FR": (2000, 550),
    "GB": (2000, 0),
    "IE": (2300, 0),
    "IT": (2200, 400),
    "LU": (1700, 300),
    "MC": (2000, 550),
    "NL": (2100, 900),
    "PL": (2300, 500),
    "PT": (2300, 600),
    "SE": (2500, 600),
}

EXPRESS_BANDS: tuple[dict[str, Any], ...] = (
    {"up_to_grams": 1_000, "amount": 990},
    {"up_to_grams": 5_000, "amount": 1490},
    {"up_to_grams": 20_000, "amount": 2490},
    {"up_to_grams": None, "amount": 4990},
)


async def seed_checkout(db: Database, *, currency: str) -> None:
    """Create the demo shipping, tax and promo setup in ``currency``, the shop's (what exists
    already is kept)."""

    def amount(euro_cents: int) -> int:
        return local_figure(euro_cents, currency)

    bands = [{**band, "amount": amount(band["amount"])} for band in EXPRESS_BANDS]
    async with db.transaction() as uow:
        existing = {r.name: r.id for r in await uow.execute(select(zones.c.name, zones.c.id))}
        with_methods = {
            (r.zone_id, r.code)
            for r in await uow.execute(select(methods.c.zone_id, methods.c.code))
        }
        for name, countries in ZONES.items():
            zone_id = existing.get(name)
            if zone_id is None:
                zone_id = (await service.create_zone(uow, name=name, countries=countries)).id
            if (zone_id, "standard") not in with_methods:
                await service.create_shipping_method(
                    uow,
                    zone_id=zone_id,
                    code="standard",
                    name="Standard delivery",
                    kind="free_over",
                    amount=amount(490),
                    currency=currency,
                    free_over=amount(5000),
                    min_days=2,
                    max_days=5,
                    position=0,
                )
            if (zone_id, "express") not in with_methods:
                await service.create_shipping_method(
                    uow,
                    zone_id=zone_id,
                    code="express",
                    name="Express delivery",
                    kind="weight_band",
                    amount=0,
                    currency=currency,
                    weight_bands=bands,
                    min_days=1,
                    max_days=2,
                    position=1,
                )
        for country, (standard, reduced) in TAX_RATES.items():
            await service.set_tax_rate(
                uow, country=country, tax_class="standard", rate_bps=standard
            )
            await service.set_tax_rate(uow, country=country, tax_class="reduced", rate_bps=reduced)
        await service.set_prices_include_tax(uow, True)
        now = utcnow()
        promos: tuple[dict[str, Any], ...] = (
            {"code": "WELCOME10", "kind": "percent", "value": 1000, "per_customer_limit": 1},
            {
                "code": "SAVE5",
                "kind": "fixed",
                "value": amount(500),
                "currency": currency,
                "min_subtotal": amount(3000),
            },
            {"code": "LIMITED", "kind": "percent", "value": 2000, "usage_limit": 100},
            {
                "code": "SUMMER",
                "kind": "percent",
                "value": 1500,
                "starts_at": now - timedelta(days=30),
                "ends_at": now + timedelta(days=60),
            },
        )
        known = {p.code for p in await service.list_promo_codes(uow)}
        for promo in promos:
            if promo["code"] not in known:
                await service.create_promo_code(uow, **promo)
