"""The per-process pricing setup a checkout reuses: changes made here apply at once, a copy
expires, and a shipping method the copy does not know is looked up afresh."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from mercato.checkout import service
from mercato.checkout.models import tax_rates
from mercato.db import Database
from mercato.runtime import Runtime
from tests.checkout.conftest import ADDRESS, Shop, fill_cart, make_customer, make_variant

REQUEST = service.CheckoutRequest(
    shipping_address=ADDRESS, shipping_method="standard", payment_token="tok_visa"
)


async def load(db: Database, cache: service.PricingSetupCache) -> service.PricingContext:
    async with db.transaction() as uow:
        return await service.load_pricing_context(
            uow,
            country="DE",
            region=None,
            shipping_method="standard",
            promo_code=None,
            currency="EUR",
            cache=cache,
        )


async def set_rate_behind_the_modules_back(db: Database, rate_bps: int) -> None:
    """A change this process does not hear of (as if made by another process)."""
    async with db.transaction() as uow:
        await uow.execute(
            update(tax_rates)
            .where(tax_rates.c.country == "DE", tax_rates.c.tax_class == "standard")
            .values(rate_bps=rate_bps)
        )


async def test_a_copy_is_reused_until_it_expires(db: Database, shop: Shop) -> None:
    cache = service.PricingSetupCache(ttl_seconds=3600)
    assert (await load(db, cache)).tax_table.rate_for("DE", None, "standard") == 1900
    await set_rate_behind_the_modules_back(db, 2000)
    assert (await load(db, cache)).tax_table.rate_for("DE", None, "standard") == 1900
    expired = service.PricingSetupCache(ttl_seconds=0)
    assert (await load(db, expired)).tax_table.rate_for("DE", None, "standard") == 2000


async def test_changes_made_through_the_module_apply_at_once(db: Database, shop: Shop) -> None:
    cache = service.PricingSetupCache(ttl_seconds=3600)
    assert (await load(db, cache)).prices_include_tax is True
    async with db.transaction() as uow:
        await service.set_prices_include_tax(uow, False)
        await service.set_tax_rate(uow, country="DE", tax_class="standard", rate_bps=1000)
    context = await load(db, cache)
    assert context.prices_include_tax is False
    assert context.tax_table.rate_for("DE", None, "standard") == 1000


async def test_a_method_unknown_to_the_copy_is_looked_up(
    db: Database, shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = service.PricingSetupCache(ttl_seconds=3600)
    generation = service.PricingSetupCache.generation
    await load(db, cache)
    async with db.transaction() as uow:
        zone = await service.create_zone(uow, name="Germany only", countries=["DE"])
        await service.create_shipping_method(
            uow,
            zone_id=zone.id,
            code="pickup",
            name="Pick-up",
            kind="flat",
            amount=0,
            currency="EUR",
        )
    # As if the method had been made by another process: this one's copy still looks current.
    monkeypatch.setattr(service.PricingSetupCache, "generation", generation)
    async with db.transaction() as uow:
        context = await service.load_pricing_context(
            uow,
            country="DE",
            region=None,
            shipping_method="pickup",
            promo_code=None,
            currency="EUR",
            cache=cache,
        )
    assert context.method.code == "pickup"


async def test_checkouts_price_with_a_changed_tax_rate(
    runtime: Runtime, db: Database, shop: Shop
) -> None:
    variant = await make_variant(db, price=11900, stock=5)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 1))
    first = await service.checkout(runtime, buyer.user, "k1", REQUEST)
    assert first["tax"] == "19.00"
    async with db.transaction() as uow:
        await service.set_tax_rate(uow, country="DE", tax_class="standard", rate_bps=0)
    await fill_cart(db, buyer.id, (variant, 1))
    second = await service.checkout(runtime, buyer.user, "k2", REQUEST)
    assert second["tax"] == "0.00"
