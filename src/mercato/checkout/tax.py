"""Tax: a rate per destination and tax class, and whether catalog prices include tax.

A rate is stored in basis points (1900 = 19 %) for a country, optionally a region (``""`` for
the whole country, so the unique constraint holds on every database), and a tax class; how a
rate applies to a cart is :mod:`mercato.checkout.pricing`'s business. Every change makes the
cached pricing setups stale. A refused change writes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, select

from mercato.checkout.common import insert, normalize_country, normalize_region
from mercato.checkout.models import settings_table, tax_rates
from mercato.checkout.pricing import BPS, TaxTable
from mercato.checkout.schemas import TaxRateIn, percent_to_bps
from mercato.checkout.setup_cache import pricing_setup_changed
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.problems import validation_problem

PRICES_INCLUDE_TAX = "prices_include_tax"
DEFAULT_PRICES_INCLUDE_TAX = True
"""Without a ``prices_include_tax`` settings row, catalog prices are tax-inclusive (the way
European shops show prices); staff switch it with ``PUT /api/admin/checkout/settings``."""

_TAX_CLASS = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


# --------------------------------------------------------------------------------------------
# The shop's price setting


async def prices_include_tax(uow: UnitOfWork) -> bool:
    value = await uow.scalar(
        select(settings_table.c.value).where(settings_table.c.key == PRICES_INCLUDE_TAX)
    )
    return DEFAULT_PRICES_INCLUDE_TAX if value is None else bool(value)


async def set_prices_include_tax(uow: UnitOfWork, value: bool) -> bool:
    pricing_setup_changed()
    ins = insert(uow, settings_table).values(
        key=PRICES_INCLUDE_TAX, value=value, updated_at=utcnow()
    )
    await uow.execute(
        ins.on_conflict_do_update(
            index_elements=[settings_table.c.key],
            set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
        )
    )
    return value


# --------------------------------------------------------------------------------------------
# Rates


@dataclass(frozen=True, slots=True)
class TaxRateInfo:
    id: str
    country: str
    region: str | None
    tax_class: str
    rate_bps: int


def _rate_info(row: Row[Any]) -> TaxRateInfo:
    return TaxRateInfo(row.id, row.country, row.region or None, row.tax_class, row.rate_bps)


async def set_tax_rate(
    uow: UnitOfWork,
    *,
    country: str,
    tax_class: str,
    rate_bps: int,
    region: str | None = None,
) -> TaxRateInfo:
    """Create or replace the rate for (country, region, tax class)."""
    country = normalize_country(country)
    region_key = normalize_region(region)
    tax_class = tax_class.strip()
    if not _TAX_CLASS.match(tax_class):
        raise validation_problem("tax_class", "lower-case letters, digits and '_'")
    if isinstance(rate_bps, bool) or not isinstance(rate_bps, int) or not 0 <= rate_bps <= BPS:
        raise validation_problem("rate_bps", "must be 0 to 10000 basis points")
    pricing_setup_changed()
    ins = insert(uow, tax_rates).values(
        id=new_id("tax"),
        country=country,
        region=region_key,
        tax_class=tax_class,
        rate_bps=rate_bps,
        updated_at=utcnow(),
    )
    await uow.execute(
        ins.on_conflict_do_update(
            index_elements=[tax_rates.c.country, tax_rates.c.region, tax_rates.c.tax_class],
            set_={"rate_bps": ins.excluded.rate_bps, "updated_at": ins.excluded.updated_at},
        )
    )
    row = (
        await uow.execute(
            select(tax_rates).where(
                tax_rates.c.country == country,
                tax_rates.c.region == region_key,
                tax_rates.c.tax_class == tax_class,
            )
        )
    ).one()
    return _rate_info(row)


async def save_tax_rate(uow: UnitOfWork, body: TaxRateIn) -> TaxRateInfo:
    """A rate as staff send it (a percentage, e.g. ``"7.5"``), for the API and the back office."""
    return await set_tax_rate(
        uow,
        country=body.country,
        region=body.region,
        tax_class=body.tax_class,
        rate_bps=percent_to_bps(body.rate),
    )


async def list_tax_rates(uow: UnitOfWork, country: str | None = None) -> list[TaxRateInfo]:
    query = select(tax_rates).order_by(
        tax_rates.c.country, tax_rates.c.region, tax_rates.c.tax_class
    )
    if country is not None:
        query = query.where(tax_rates.c.country == country)
    return [_rate_info(r) for r in await uow.execute(query)]


async def tax_table_for(uow: UnitOfWork, country: str) -> TaxTable:
    rows = await uow.execute(
        select(tax_rates.c.region, tax_rates.c.tax_class, tax_rates.c.rate_bps).where(
            tax_rates.c.country == country
        )
    )
    return TaxTable({(country, r.region, r.tax_class): int(r.rate_bps) for r in rows})
