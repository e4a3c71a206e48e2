"""The pricing setup (shipping methods, tax rates, the price setting) a process's checkouts
reuse for a destination country for a moment, instead of reading it for every order.

Changes made through this module in the same process apply at once
(:func:`pricing_setup_changed`); other processes see them within
:data:`PRICING_SETUP_TTL_SECONDS`, and a shipping method a cached copy does not know is looked
up afresh. Promo codes are never cached (their uses are counted), nor are catalog prices
(checkout refuses a changed price).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mercato.checkout.pricing import TaxTable

if TYPE_CHECKING:
    from mercato.checkout.shipping import ShippingMethodInfo

PRICING_SETUP_TTL_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class PricingSetup:
    methods: tuple[ShippingMethodInfo, ...]
    tax_table: TaxTable
    prices_include_tax: bool
    generation: int
    loaded_at: float


class PricingSetupCache:
    """One process's pricing setup per destination country."""

    generation = 0
    """Bumped by every change of the setup made in this process (shared by all instances)."""

    def __init__(self, ttl_seconds: float | None = None) -> None:
        self.ttl_seconds = PRICING_SETUP_TTL_SECONDS if ttl_seconds is None else ttl_seconds
        self._by_country: dict[str, PricingSetup] = {}

    def get(self, country: str) -> PricingSetup | None:
        found = self._by_country.get(country)
        if found is None or found.generation != PricingSetupCache.generation:
            return None
        if time.monotonic() - found.loaded_at >= self.ttl_seconds:
            return None
        return found

    def put(self, country: str, setup: PricingSetup) -> None:
        self._by_country[country] = setup


def pricing_setup_changed() -> None:
    """Every cached pricing setup of this process is stale (called on any change to shipping
    zones or methods, tax rates or the price setting)."""
    PricingSetupCache.generation += 1


def pricing_setup_cache(extras: dict[str, Any]) -> PricingSetupCache:
    """The process's cache, kept in the runtime's ``extras``."""
    cache = extras.get("checkout.pricing_setup")
    if not isinstance(cache, PricingSetupCache):
        cache = PricingSetupCache()
        extras["checkout.pricing_setup"] = cache
    return cache
