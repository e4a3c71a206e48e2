"""Shipping: zones (sets of destination countries) and the methods each zone ships with.

A method is ``flat`` (always its amount), ``free_over`` (its amount, or nothing once the
discounted goods reach the threshold) or ``weight_band`` (the amount of the first band the
parcel fits); what a method costs a given cart is :func:`mercato.checkout.pricing.shipping_cost`.
Every change makes the cached pricing setups stale. A refused change writes nothing: every check
runs before the insert, and a name or code already taken is an ``ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Row, select

from mercato.checkout.common import (
    check_amount,
    check_currency,
    insert,
    minor,
    normalize_country,
)
from mercato.checkout.models import methods, zones
from mercato.checkout.pricing import ShippingKind, ShippingRate, WeightBand, shipping_cost
from mercato.checkout.schemas import ShippingMethodIn
from mercato.checkout.setup_cache import pricing_setup_changed
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.money import format_minor
from mercato.problems import Problem, validation_problem

_METHOD_CODE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


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


# --------------------------------------------------------------------------------------------
# Zones


async def create_zone(uow: UnitOfWork, *, name: str, countries: Sequence[str]) -> ZoneInfo:
    name = name.strip()
    if not 0 < len(name) <= 80:
        raise validation_problem("name", "must be 1 to 80 characters")
    if not countries:
        raise validation_problem("countries", "must list at least one country")
    codes = sorted({normalize_country(c, f"countries[{i}]") for i, c in enumerate(countries)})
    zone_id = new_id("shz")
    pricing_setup_changed()
    done = await uow.changed(
        insert(uow, zones)
        .values(id=zone_id, name=name, countries=codes, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[zones.c.name])
    )
    if done != 1:
        raise Problem(409, "zone_exists", f"A shipping zone named {name!r} already exists")
    return ZoneInfo(zone_id, name, tuple(codes))


async def ship_to_countries(uow: UnitOfWork) -> list[str]:
    """Every country some shipping zone covers (sorted by code)."""
    return sorted({c for zone in await list_zones(uow) for c in zone.countries})


def choose_country(countries: Sequence[str], asked: str | None, default: str) -> str:
    """The destination to price for: the one asked for when the shop ships there, else the
    shop's default when it does, else the first it ships to ("" when it ships nowhere)."""
    wanted = (asked or "").strip().upper()
    if wanted in countries:
        return wanted
    return default if default in countries else (list(countries) or [""])[0]


async def list_zones(uow: UnitOfWork) -> list[ZoneInfo]:
    rows = await uow.execute(select(zones).order_by(zones.c.name))
    return [_zone_info(r) for r in rows]


# --------------------------------------------------------------------------------------------
# Methods


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
        amount = check_amount(band.get("amount"), f"weight_bands[{i}].amount")  # type: ignore[arg-type]
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
    uow: UnitOfWork,
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
    check_amount(amount, "amount")
    check_currency(currency)
    if free_over is not None:
        check_amount(free_over, "free_over")
    elif kind == "free_over":
        raise validation_problem("free_over", "a free_over method needs the threshold")
    bands = _check_bands(kind, weight_bands)
    if not 0 <= min_days <= max_days <= 365:
        raise validation_problem("max_days", "need 0 <= min_days <= max_days <= 365")
    zone = (await uow.execute(select(zones).where(zones.c.id == zone_id))).first()
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
    done = await uow.changed(
        insert(uow, methods)
        .values(values)
        .on_conflict_do_nothing(index_elements=[methods.c.zone_id, methods.c.code])
    )
    if done != 1:
        raise Problem(
            409,
            "shipping_method_exists",
            f"The zone {zone.name!r} already has a method {code!r}",
        )
    row = (await uow.execute(select(methods).where(methods.c.id == values["id"]))).one()
    return _method_info(row, zone.name)


async def add_shipping_method(uow: UnitOfWork, body: ShippingMethodIn) -> ShippingMethodInfo:
    """A method as staff send it (prices as decimal strings in its currency), for the API and
    the back office."""
    c = body.currency
    bands = [
        {"up_to_grams": b.up_to_grams, "amount": minor(b.price, c, f"weight_bands[{i}].price")}
        for i, b in enumerate(body.weight_bands)
    ]
    return await create_shipping_method(
        uow,
        zone_id=body.zone_id,
        code=body.code,
        name=body.name,
        kind=body.kind,
        amount=minor(body.price, c, "price"),
        currency=c,
        free_over=None if body.free_over is None else minor(body.free_over, c, "free_over"),
        weight_bands=bands,
        min_days=body.min_days,
        max_days=body.max_days,
        position=body.position,
    )


async def list_shipping_methods(uow: UnitOfWork) -> list[ShippingMethodInfo]:
    rows = await uow.execute(
        select(methods, zones.c.name.label("zone_name"))
        .join(zones, zones.c.id == methods.c.zone_id)
        .order_by(zones.c.name, methods.c.position, methods.c.code)
    )
    return [_method_info(r, r.zone_name) for r in rows]


async def shipping_methods_for(
    uow: UnitOfWork, country: str, *, currency: str | None = None
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
    for row in await uow.execute(query):
        if country in (row.countries or ()) and row.code not in found:
            found[row.code] = _method_info(row, row.zone_name)
    return list(found.values())


async def cheapest_shipping(
    uow: UnitOfWork, country: str, weight_grams: int, goods_total: int, currency: str
) -> int | None:
    """What the cheapest active method charges to carry one parcel of ``weight_grams`` worth
    ``goods_total`` to ``country`` (a marketplace offer's landed price); ``None`` when no method
    ships there in ``currency`` or can carry it."""
    costs = [
        cost
        for m in await shipping_methods_for(uow, country, currency=currency)
        if (cost := shipping_cost(m.rate(), weight_grams, goods_total)) is not None
    ]
    return min(costs, default=None)


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
