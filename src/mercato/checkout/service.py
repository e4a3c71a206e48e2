"""Checkout rules outside the saga: shipping zones and methods, tax rates, the shop's price
setting, promo codes and their uses, and quoting a cart with :func:`pricing.price_cart`.

A promo use is taken with one conditional ``UPDATE … SET used_count = used_count + 1 WHERE
used_count < usage_limit``: the database decides who gets the last use, and the row lock that
UPDATE takes serialises the per-customer count that follows in the same transaction. A use is
given back (or made final) by flipping the redemption row's state with a conditional UPDATE,
so each use is counted and returned at most once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato.cart import service as cart_service
from mercato.catalog import service as catalog
from mercato.checkout.models import (
    methods,
    promo_codes,
    redemptions,
    settings_table,
    tax_rates,
    zones,
)
from mercato.checkout.pricing import (
    BPS,
    Destination,
    PricedCart,
    PricedLine,
    PriceLine,
    PromoKind,
    PromoTerms,
    ShippingKind,
    ShippingRate,
    TaxTable,
    WeightBand,
    price_cart,
)
from mercato.db import utcnow
from mercato.ids import new_id
from mercato.money import MAX_MINOR, format_minor
from mercato.problems import Problem, validation_problem

Executor = AsyncSession | AsyncConnection

PRICES_INCLUDE_TAX = "prices_include_tax"
DEFAULT_PRICES_INCLUDE_TAX = True
"""Without a ``prices_include_tax`` settings row, catalog prices are tax-inclusive (the way
European shops show prices); staff switch it with ``PUT /api/admin/checkout/settings``."""

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_METHOD_CODE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_PROMO_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")
_TAX_CLASS = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_REGION = re.compile(r"^[A-Z0-9-]{1,16}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


# --------------------------------------------------------------------------------------------
# Small helpers


def _insert(executor: Executor, table: Any) -> postgresql.Insert | sqlite.Insert:
    bind = executor.get_bind() if isinstance(executor, AsyncSession) else executor
    if bind.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def normalize_country(value: str, field: str = "country") -> str:
    code = value.strip().upper()
    if not _COUNTRY.match(code):
        raise validation_problem(field, "must be an ISO 3166-1 alpha-2 country code such as 'DE'")
    return code


def normalize_region(value: str | None, field: str = "region") -> str:
    if value is None or not value.strip():
        return ""
    region = value.strip().upper()
    if not _REGION.match(region):
        raise validation_problem(field, "must be 1 to 16 letters, digits or '-'")
    return region


def normalize_promo_code(value: str) -> str:
    return value.strip().upper()


def _check_currency(value: str, field: str = "currency") -> str:
    if not _CURRENCY.match(value):
        raise validation_problem(field, "must be an ISO 4217 code such as EUR")
    return value


def _check_amount(value: int, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_MINOR:
        raise validation_problem(field, "must be a non-negative amount")
    return value


# --------------------------------------------------------------------------------------------
# The pricing setup, cached per process for checkouts

PRICING_SETUP_TTL_SECONDS = 2.0
"""How long a process's checkouts reuse the shipping methods, tax rates and price setting they
read for a destination country. Changes made through this module in the same process apply at
once (:func:`pricing_setup_changed`); other processes see them within this many seconds, and a
shipping method a cached copy does not know is looked up afresh. Promo codes are never cached
(their uses are counted), nor are catalog prices (checkout refuses a changed price)."""


@dataclass(frozen=True, slots=True)
class _PricingSetup:
    methods: tuple[ShippingMethodInfo, ...]
    tax_table: TaxTable
    prices_include_tax: bool
    generation: int
    loaded_at: float


class PricingSetupCache:
    """One process's pricing setup per destination country (see
    :data:`PRICING_SETUP_TTL_SECONDS`)."""

    generation = 0
    """Bumped by every change of the setup made in this process (shared by all instances)."""

    def __init__(self, ttl_seconds: float | None = None) -> None:
        self.ttl_seconds = PRICING_SETUP_TTL_SECONDS if ttl_seconds is None else ttl_seconds
        self._by_country: dict[str, _PricingSetup] = {}

    def get(self, country: str) -> _PricingSetup | None:
        found = self._by_country.get(country)
        if found is None or found.generation != PricingSetupCache.generation:
            return None
        if time.monotonic() - found.loaded_at >= self.ttl_seconds:
            return None
        return found

    def put(self, country: str, setup: _PricingSetup) -> None:
        self._by_country[country] = setup


def pricing_setup_changed() -> None:
    """Every cached pricing setup of this process is stale (call on any change to shipping
    zones or methods, tax rates or the price setting)."""
    PricingSetupCache.generation += 1


def pricing_setup_cache(extras: dict[str, Any]) -> PricingSetupCache:
    """The process's cache, kept in the runtime's ``extras``."""
    cache = extras.get("checkout.pricing_setup")
    if not isinstance(cache, PricingSetupCache):
        cache = PricingSetupCache()
        extras["checkout.pricing_setup"] = cache
    return cache


async def _pricing_setup(executor: Executor, country: str) -> _PricingSetup:
    generation = PricingSetupCache.generation  # before reading: a change meanwhile wins
    return _PricingSetup(
        methods=tuple(await shipping_methods_for(executor, country)),
        tax_table=await tax_table_for(executor, country),
        prices_include_tax=await prices_include_tax(executor),
        generation=generation,
        loaded_at=time.monotonic(),
    )


# --------------------------------------------------------------------------------------------
# The shop's price setting


async def prices_include_tax(executor: Executor) -> bool:
    value = await executor.scalar(
        select(settings_table.c.value).where(settings_table.c.key == PRICES_INCLUDE_TAX)
    )
    return DEFAULT_PRICES_INCLUDE_TAX if value is None else bool(value)


async def set_prices_include_tax(conn: AsyncConnection, value: bool) -> bool:
    pricing_setup_changed()
    ins = _insert(conn, settings_table).values(
        key=PRICES_INCLUDE_TAX, value=value, updated_at=utcnow()
    )
    await conn.execute(
        ins.on_conflict_do_update(
            index_elements=[settings_table.c.key],
            set_={"value": ins.excluded.value, "updated_at": ins.excluded.updated_at},
        )
    )
    return value


# --------------------------------------------------------------------------------------------
# Shipping


@dataclass(frozen=True, slots=True)
class ZoneInfo:
    id: str
    name: str
    countries: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ShippingMethodInfo:
    id: str
    zone_id: str
    zone_name: str
    code: str
    name: str
    kind: ShippingKind
    amount: int
    currency: str
    free_over: int | None
    weight_bands: tuple[WeightBand, ...]
    min_days: int
    max_days: int
    position: int
    active: bool

    def rate(self) -> ShippingRate:
        return ShippingRate(
            code=self.code,
            name=self.name,
            kind=self.kind,
            amount=self.amount,
            currency=self.currency,
            free_over=self.free_over,
            weight_bands=self.weight_bands,
        )


def _zone_info(row: Row[Any]) -> ZoneInfo:
    return ZoneInfo(id=row.id, name=row.name, countries=tuple(row.countries or ()))


def _bands(raw: Sequence[Mapping[str, Any]] | None) -> tuple[WeightBand, ...]:
    return tuple(
        WeightBand(
            up_to_grams=None if b.get("up_to_grams") is None else int(b["up_to_grams"]),
            amount=int(b["amount"]),
        )
        for b in raw or ()
    )


def _method_info(row: Row[Any], zone_name: str) -> ShippingMethodInfo:
    return ShippingMethodInfo(
        id=row.id,
        zone_id=row.zone_id,
        zone_name=zone_name,
        code=row.code,
        name=row.name,
        kind=cast(ShippingKind, row.kind),
        amount=int(row.amount),
        currency=row.currency,
        free_over=None if row.free_over is None else int(row.free_over),
        weight_bands=_bands(row.weight_bands),
        min_days=row.min_days,
        max_days=row.max_days,
        position=row.position,
        active=bool(row.active),
    )


async def create_zone(conn: AsyncConnection, *, name: str, countries: Sequence[str]) -> ZoneInfo:
    name = name.strip()
    if not 0 < len(name) <= 80:
        raise validation_problem("name", "must be 1 to 80 characters")
    if not countries:
        raise validation_problem("countries", "must list at least one country")
    codes = sorted({normalize_country(c, f"countries[{i}]") for i, c in enumerate(countries)})
    zone_id = new_id("shz")
    pricing_setup_changed()
    done = await conn.execute(
        _insert(conn, zones)
        .values(id=zone_id, name=name, countries=codes, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[zones.c.name])
    )
    if done.rowcount != 1:
        raise Problem(409, "zone_exists", f"A shipping zone named {name!r} already exists")
    return ZoneInfo(zone_id, name, tuple(codes))


async def list_zones(executor: Executor) -> list[ZoneInfo]:
    rows = await executor.execute(select(zones).order_by(zones.c.name))
    return [_zone_info(r) for r in rows]


def _check_bands(kind: str, bands: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if kind != "weight_band":
        if bands:
            raise validation_problem("weight_bands", "only a weight_band method has bands")
        return []
    if not bands:
        raise validation_problem("weight_bands", "a weight_band method needs at least one band")
    clean: list[dict[str, Any]] = []
    last = -1
    for i, band in enumerate(bands):
        up_to = band.get("up_to_grams")
        amount = _check_amount(band.get("amount"), f"weight_bands[{i}].amount")  # type: ignore[arg-type]
        if up_to is None:
            if i != len(bands) - 1:
                raise validation_problem(
                    f"weight_bands[{i}].up_to_grams", "only the last band may be open-ended"
                )
        elif isinstance(up_to, bool) or not isinstance(up_to, int) or up_to <= last:
            raise validation_problem(
                f"weight_bands[{i}].up_to_grams", "must be whole grams, ascending"
            )
        else:
            last = up_to
        clean.append({"up_to_grams": up_to, "amount": amount})
    return clean


async def create_shipping_method(
    conn: AsyncConnection,
    *,
    zone_id: str,
    code: str,
    name: str,
    kind: ShippingKind,
    amount: int,
    currency: str,
    free_over: int | None = None,
    weight_bands: Sequence[Mapping[str, Any]] = (),
    min_days: int = 2,
    max_days: int = 5,
    position: int = 0,
) -> ShippingMethodInfo:
    code = code.strip().lower()
    if not _METHOD_CODE.match(code):
        raise validation_problem("code", "1-32 lower-case letters, digits, '-' or '_'")
    name = name.strip()
    if not 0 < len(name) <= 80:
        raise validation_problem("name", "must be 1 to 80 characters")
    if kind not in ("flat", "weight_band", "free_over"):
        raise validation_problem("kind", "must be flat, weight_band or free_over")
    _check_amount(amount, "amount")
    _check_currency(currency)
    if free_over is not None:
        _check_amount(free_over, "free_over")
    elif kind == "free_over":
        raise validation_problem("free_over", "a free_over method needs the threshold")
    bands = _check_bands(kind, weight_bands)
    if not 0 <= min_days <= max_days <= 365:
        raise validation_problem("max_days", "need 0 <= min_days <= max_days <= 365")
    zone = (await conn.execute(select(zones).where(zones.c.id == zone_id))).first()
    if zone is None:
        raise validation_problem("zone_id", f"no shipping zone {zone_id!r}", code="unknown_zone")
    values = {
        "id": new_id("shm"),
        "zone_id": zone_id,
        "code": code,
        "name": name,
        "kind": kind,
        "amount": amount,
        "currency": currency,
        "free_over": free_over,
        "weight_bands": bands,
        "min_days": min_days,
        "max_days": max_days,
        "position": position,
        "active": True,
        "created_at": utcnow(),
    }
    pricing_setup_changed()
    done = await conn.execute(
        _insert(conn, methods)
        .values(values)
        .on_conflict_do_nothing(index_elements=[methods.c.zone_id, methods.c.code])
    )
    if done.rowcount != 1:
        raise Problem(
            409,
            "shipping_method_exists",
            f"The zone {zone.name!r} already has a method {code!r}",
        )
    row = (await conn.execute(select(methods).where(methods.c.id == values["id"]))).one()
    return _method_info(row, zone.name)


async def list_shipping_methods(executor: Executor) -> list[ShippingMethodInfo]:
    rows = await executor.execute(
        select(methods, zones.c.name.label("zone_name"))
        .join(zones, zones.c.id == methods.c.zone_id)
        .order_by(zones.c.name, methods.c.position, methods.c.code)
    )
    return [_method_info(r, r.zone_name) for r in rows]


async def shipping_methods_for(
    executor: Executor, country: str, *, currency: str | None = None
) -> list[ShippingMethodInfo]:
    """The active methods of the zones shipping to ``country`` (in display order). Zones are
    few, so the country match is made here rather than in a JSON query per dialect."""
    query = (
        select(methods, zones.c.name.label("zone_name"), zones.c.countries)
        .join(zones, zones.c.id == methods.c.zone_id)
        .where(methods.c.active.is_(True))
        .order_by(methods.c.position, methods.c.code, zones.c.name)
    )
    if currency is not None:
        query = query.where(methods.c.currency == currency)
    found: dict[str, ShippingMethodInfo] = {}
    for row in await executor.execute(query):
        if country in (row.countries or ()) and row.code not in found:
            found[row.code] = _method_info(row, row.zone_name)
    return list(found.values())


# --------------------------------------------------------------------------------------------
# Tax


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
    conn: AsyncConnection,
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
    ins = _insert(conn, tax_rates).values(
        id=new_id("tax"),
        country=country,
        region=region_key,
        tax_class=tax_class,
        rate_bps=rate_bps,
        updated_at=utcnow(),
    )
    await conn.execute(
        ins.on_conflict_do_update(
            index_elements=[tax_rates.c.country, tax_rates.c.region, tax_rates.c.tax_class],
            set_={"rate_bps": ins.excluded.rate_bps, "updated_at": ins.excluded.updated_at},
        )
    )
    row = (
        await conn.execute(
            select(tax_rates).where(
                tax_rates.c.country == country,
                tax_rates.c.region == region_key,
                tax_rates.c.tax_class == tax_class,
            )
        )
    ).one()
    return _rate_info(row)


async def list_tax_rates(executor: Executor, country: str | None = None) -> list[TaxRateInfo]:
    query = select(tax_rates).order_by(
        tax_rates.c.country, tax_rates.c.region, tax_rates.c.tax_class
    )
    if country is not None:
        query = query.where(tax_rates.c.country == country)
    return [_rate_info(r) for r in await executor.execute(query)]


async def tax_table_for(executor: Executor, country: str) -> TaxTable:
    rows = await executor.execute(
        select(tax_rates.c.region, tax_rates.c.tax_class, tax_rates.c.rate_bps).where(
            tax_rates.c.country == country
        )
    )
    return TaxTable({(country, r.region, r.tax_class): int(r.rate_bps) for r in rows})


# --------------------------------------------------------------------------------------------
# Promo codes


@dataclass(frozen=True, slots=True)
class PromoInfo:
    id: str
    code: str
    kind: PromoKind
    value: int
    currency: str | None
    min_subtotal: int
    starts_at: datetime | None
    ends_at: datetime | None
    usage_limit: int | None
    per_customer_limit: int | None
    used_count: int
    active: bool

    def terms(self) -> PromoTerms:
        return PromoTerms(self.code, self.kind, self.value, self.min_subtotal)


def _promo_info(row: Row[Any]) -> PromoInfo:
    return PromoInfo(
        id=row.id,
        code=row.code,
        kind=cast(PromoKind, row.kind),
        value=int(row.value),
        currency=row.currency,
        min_subtotal=int(row.min_subtotal),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        usage_limit=row.usage_limit,
        per_customer_limit=row.per_customer_limit,
        used_count=row.used_count,
        active=bool(row.active),
    )


async def create_promo_code(
    conn: AsyncConnection,
    *,
    code: str,
    kind: PromoKind,
    value: int,
    currency: str | None = None,
    min_subtotal: int = 0,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    usage_limit: int | None = None,
    per_customer_limit: int | None = None,
    active: bool = True,
) -> PromoInfo:
    code = normalize_promo_code(code)
    if not _PROMO_CODE.match(code):
        raise validation_problem("code", "2-32 letters, digits, '-' or '_'")
    if kind not in ("percent", "fixed"):
        raise validation_problem("kind", "must be percent or fixed")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise validation_problem("value", "must be positive")
    if kind == "percent" and value > BPS:
        raise validation_problem("value", "a percentage is at most 10000 basis points (100 %)")
    if kind == "fixed":
        if currency is None:
            raise validation_problem("currency", "a fixed-amount code needs a currency")
        _check_amount(value, "value")
    if currency is not None:
        _check_currency(currency)
    _check_amount(min_subtotal, "min_subtotal")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise validation_problem("ends_at", "must be after starts_at")
    if usage_limit is not None and usage_limit < 0:
        raise validation_problem("usage_limit", "must not be negative")
    if per_customer_limit is not None and per_customer_limit < 1:
        raise validation_problem("per_customer_limit", "must be at least 1")
    now = utcnow()
    promo_id = new_id("promo")
    values = {
        "id": promo_id,
        "code": code,
        "kind": kind,
        "value": value,
        "currency": currency,
        "min_subtotal": min_subtotal,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "usage_limit": usage_limit,
        "per_customer_limit": per_customer_limit,
        "used_count": 0,
        "active": active,
        "created_at": now,
        "updated_at": now,
    }
    done = await conn.execute(
        _insert(conn, promo_codes)
        .values(values)
        .on_conflict_do_nothing(index_elements=[promo_codes.c.code])
    )
    if done.rowcount != 1:
        raise Problem(409, "promo_code_exists", f"The promo code {code} already exists")
    return PromoInfo(
        id=promo_id,
        code=code,
        kind=kind,
        value=value,
        currency=currency,
        min_subtotal=min_subtotal,
        starts_at=starts_at,
        ends_at=ends_at,
        usage_limit=usage_limit,
        per_customer_limit=per_customer_limit,
        used_count=0,
        active=active,
    )


async def list_promo_codes(executor: Executor) -> list[PromoInfo]:
    rows = await executor.execute(select(promo_codes).order_by(promo_codes.c.code))
    return [_promo_info(r) for r in rows]


async def get_promo_by_code(executor: Executor, code: str) -> PromoInfo | None:
    row = (
        await executor.execute(
            select(promo_codes).where(promo_codes.c.code == normalize_promo_code(code))
        )
    ).first()
    return _promo_info(row) if row is not None else None


async def get_promo(executor: Executor, promo_id: str) -> PromoInfo | None:
    row = (await executor.execute(select(promo_codes).where(promo_codes.c.id == promo_id))).first()
    return _promo_info(row) if row is not None else None


def invalid_promo(code: str, reason: str, detail: str) -> Problem:
    return Problem(
        422,
        "invalid_promo_code",
        detail,
        title="Invalid promo code",
        reason=reason,
        promo_code=code,
        errors=[{"field": "promo_code", "message": detail, "type": "promo"}],
    )


def check_promo_usable(
    promo: PromoInfo | None, code: str, *, currency: str, now: datetime
) -> PromoInfo:
    """The promo when it can be used now in ``currency``; else 422 ``invalid_promo_code`` with a
    ``reason`` (unknown, inactive, not_started, expired, currency, used_up). The usage limit is
    only pre-checked here; the real check is :func:`take_promo_use`."""
    if promo is None:
        raise invalid_promo(code, "unknown", f"There is no promo code {code!r}")
    if not promo.active:
        raise invalid_promo(code, "inactive", f"The code {promo.code} is no longer valid")
    if promo.starts_at is not None and now < promo.starts_at:
        raise invalid_promo(code, "not_started", f"The code {promo.code} is not valid yet")
    if promo.ends_at is not None and now >= promo.ends_at:
        raise invalid_promo(code, "expired", f"The code {promo.code} has expired")
    if promo.currency is not None and promo.currency != currency:
        raise invalid_promo(
            code, "currency", f"The code {promo.code} is for {promo.currency} orders"
        )
    if promo.usage_limit is not None and promo.used_count >= promo.usage_limit:
        raise promo_used_up(promo.code)
    return promo


def promo_used_up(code: str) -> Problem:
    return invalid_promo(code, "used_up", f"The code {code} has been used up")


async def take_promo_use(
    conn: AsyncConnection, promo: PromoInfo, *, user_id: str, saga_id: str
) -> None:
    """Take one use of ``promo`` for a checkout, or raise 422 ``invalid_promo_code``
    (``used_up``, ``customer_limit``). Idempotent per checkout (``saga_id``)."""
    if await conn.scalar(select(redemptions.c.id).where(redemptions.c.saga_id == saga_id)):
        return
    p = promo_codes.c
    taken = await conn.execute(
        update(promo_codes)
        .where(
            p.id == promo.id,
            p.active.is_(True),
            or_(p.usage_limit.is_(None), p.used_count < p.usage_limit),
        )
        .values(used_count=p.used_count + 1, updated_at=utcnow())
    )
    if taken.rowcount != 1:
        raise promo_used_up(promo.code)
    # The UPDATE above holds the promo row's lock until commit, so no other checkout of this
    # code can count (or add) redemptions between this count and the insert below.
    if promo.per_customer_limit is not None:
        r = redemptions.c
        used = await conn.scalar(
            select(func.count()).where(
                r.promo_id == promo.id,
                r.user_id == user_id,
                r.state.in_(("reserved", "committed")),
            )
        )
        if int(used or 0) >= promo.per_customer_limit:
            raise invalid_promo(
                promo.code,
                "customer_limit",
                f"The code {promo.code} can be used {promo.per_customer_limit} time(s) per "
                "customer",
            )
    now = utcnow()
    try:
        await conn.execute(
            insert(redemptions).values(
                id=new_id("prd"),
                promo_id=promo.id,
                user_id=user_id,
                saga_id=saga_id,
                state="reserved",
                created_at=now,
                updated_at=now,
            )
        )
    except IntegrityError as exc:  # pragma: no cover - one saga takes its use once (row lock)
        raise promo_used_up(promo.code) from exc


async def commit_promo_use(conn: AsyncConnection, saga_id: str) -> bool:
    """The checkout became an order: its use is final. True when this call made it so."""
    done = await conn.execute(
        update(redemptions)
        .where(redemptions.c.saga_id == saga_id, redemptions.c.state == "reserved")
        .values(state="committed", updated_at=utcnow())
    )
    return bool(done.rowcount == 1)


async def release_promo_use(conn: AsyncConnection, saga_id: str) -> bool:
    """The checkout failed: give its use back (once). True when this call gave it back."""
    released = (
        await conn.execute(
            update(redemptions)
            .where(redemptions.c.saga_id == saga_id, redemptions.c.state == "reserved")
            .values(state="released", updated_at=utcnow())
            .returning(redemptions.c.promo_id)
        )
    ).first()
    if released is None:
        return False
    p = promo_codes.c
    await conn.execute(
        update(promo_codes)
        .where(p.id == released.promo_id, p.used_count > 0)
        .values(used_count=p.used_count - 1, updated_at=utcnow())
    )
    return True


async def promo_redemption_counts(executor: Executor, promo_id: str) -> dict[str, int]:
    """{state: count} of a promo's redemptions (for checks and the staff view)."""
    rows = await executor.execute(
        select(redemptions.c.state, func.count())
        .where(redemptions.c.promo_id == promo_id)
        .group_by(redemptions.c.state)
    )
    counts = dict.fromkeys(("reserved", "committed", "released"), 0)
    counts.update({state: int(n) for state, n in rows})
    return counts


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

    @property
    def price_changed(self) -> bool:
        return (self.unit_price, self.currency) != (self.unit_price_seen, self.seen_currency)

    def price_line(self) -> PriceLine:
        return PriceLine(
            self.variant_id, self.quantity, self.unit_price, self.tax_class, self.weight_grams
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
        )


def _display_title(variant: catalog.VariantInfo) -> str:
    if variant.title and variant.title != variant.product_title:
        return f"{variant.product_title} ({variant.title})"
    return variant.product_title


async def cart_items(
    session: AsyncSession, lines: Sequence[cart_service.CartLineInfo]
) -> list[CartItem]:
    """The cart's lines with their variants. A variant missing from the catalog is a 409
    ``variant_unavailable`` (it can only be removed from the cart)."""
    ids = [line.variant_id for line in lines]
    variants = await catalog.get_variants(session, ids)
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
    return items


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


def unknown_shipping_method(code: str, country: str) -> Problem:
    return Problem(
        422,
        "unknown_shipping_method",
        f"There is no shipping method {code!r} for {country}",
        title="Unknown shipping method",
        errors=[
            {
                "field": "shipping_method",
                "message": f"not available for {country}",
                "type": "unknown_shipping_method",
            }
        ],
    )


async def load_pricing_context(
    executor: Executor,
    *,
    country: str,
    region: str | None,
    shipping_method: str,
    promo_code: str | None,
    currency: str,
    now: datetime | None = None,
    cache: PricingSetupCache | None = None,
) -> PricingContext:
    """The pricing inputs for a destination. With ``cache`` (the checkout's), the shipping
    methods, tax rates and price setting may come from this process's recent copy."""
    country = normalize_country(country, "shipping_address.country")
    region_key = normalize_region(region, "shipping_address.region")
    code = shipping_method.strip().lower()
    setup = cache.get(country) if cache is not None else None
    if setup is None or not any(m.code == code for m in setup.methods):
        setup = await _pricing_setup(executor, country)
        if cache is not None:
            cache.put(country, setup)
    found = [m for m in setup.methods if m.code == code]
    method = next((m for m in found if m.currency == currency), found[0] if found else None)
    if method is None:
        raise unknown_shipping_method(shipping_method, country)
    promo = None
    if promo_code is not None and promo_code.strip():
        code_norm = normalize_promo_code(promo_code)
        promo = check_promo_usable(
            await get_promo_by_code(executor, code_norm),
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


def percent_text(bps: int) -> str:
    """Basis points as a percentage string: 1900 → ``"19.00"``, 550 → ``"5.50"``."""
    return f"{bps // 100}.{bps % 100:02d}"


def priced_to_json(priced: PricedCart, items: Sequence[CartItem] | None = None) -> dict[str, Any]:
    """A priced cart as decimal strings (what the API shows and the saga stores)."""
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
    """A priced cart in minor units, losslessly (what the saga keeps to build the order)."""
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
            }
            for x in priced.lines
        ],
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
            )
            for x in data["lines"]
        ),
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


async def quote_cart(
    session: AsyncSession,
    cart: cart_service.CartInfo | None,
    *,
    country: str,
    region: str | None,
    shipping_method: str,
    promo_code: str | None,
) -> Quote:
    """Price a cart at current catalog prices, without side effects. Lines whose variant is no
    longer on sale are a 409 ``variant_unavailable``; changed prices are listed, not refused
    (the shopper is looking at the cart; checkout itself refuses them)."""
    if cart is None or not cart.lines:
        raise cart_empty()
    items = await cart_items(session, cart.lines)
    inactive = [i.variant_id for i in items if not i.active]
    if inactive:
        raise variant_unavailable(inactive)
    ctx = await load_pricing_context(
        session,
        country=country,
        region=region,
        shipping_method=shipping_method,
        promo_code=promo_code,
        currency=cart.currency,
    )
    priced = price_items(items, ctx, cart.currency)
    return Quote(priced, tuple(items), ctx.method, tuple(price_changes(items)))


def cart_empty() -> Problem:
    return Problem(422, "cart_empty", "The cart is empty", title="Cart empty")


def method_to_json(m: ShippingMethodInfo) -> dict[str, Any]:
    c = m.currency
    return {
        "code": m.code,
        "name": m.name,
        "kind": m.kind,
        "zone": m.zone_name,
        "currency": c,
        "price": format_minor(m.amount, c),
        "free_over": None if m.free_over is None else format_minor(m.free_over, c),
        "weight_bands": [
            {"up_to_grams": b.up_to_grams, "price": format_minor(b.amount, c)}
            for b in m.weight_bands
        ],
        "delivery_days": {"min": m.min_days, "max": m.max_days},
    }


# --------------------------------------------------------------------------------------------
# For the back office


async def set_promo_active(executor: Executor, promo_id: str, active: bool) -> PromoInfo:
    """Switch a promo code off (checkouts then refuse it as ``inactive``; uses already taken
    stay counted) or back on."""
    done = await executor.execute(
        update(promo_codes)
        .where(promo_codes.c.id == promo_id)
        .values(active=active, updated_at=utcnow())
    )
    if cast(Any, done).rowcount != 1:
        raise Problem(404, "not_found", f"Promo code {promo_id!r} was not found", title="Not found")
    promo = await get_promo(executor, promo_id)
    assert promo is not None
    return promo
