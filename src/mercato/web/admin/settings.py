"""Back office: shipping (zones and their methods) and tax (rates, and whether catalog prices
include tax).

Forms are read here, validated with the checkout API's schemas and saved by one checkout
service call each, exactly as ``/api/admin/checkout/...`` does; the service refuses a change
before writing anything, so a refused form leaves the request's unit of work clean."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.checkout import service as checkout
from mercato.checkout.schemas import ShippingMethodIn, TaxRateIn, ZoneIn
from mercato.db import UnitOfWork
from mercato.problems import Problem
from mercato.runtime import UowDep
from mercato.web.admin.cfg_forms import (
    Errors,
    problem_errors,
    read_form,
    schema_errors,
    text,
    whole_number,
)
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, redirect, render, runtime_of

router = APIRouter()

METHOD_KINDS = [
    ("flat", "Flat rate"),
    ("free_over", "Flat rate, free over a threshold"),
    ("weight_band", "By weight (bands)"),
]
OPEN_ENDED = ("*", "any", "rest")
_SEPARATORS = re.compile(r"[\s,;]+")


def _zone_values(form: Any = None) -> dict[str, str]:
    if form is None:
        return {"zone_name": "", "countries": ""}
    return {"zone_name": text(form, "zone_name"), "countries": text(form, "countries")}


_METHOD_FIELDS = (
    "zone_id",
    "code",
    "method_name",
    "kind",
    "price",
    "currency",
    "free_over",
    "weight_bands",
    "min_days",
    "max_days",
    "position",
)


def _blank_method(currency: str) -> dict[str, str]:
    """The new-method form, priced in ``currency`` (the shop's) until staff change it."""
    return {n: "" for n in _METHOD_FIELDS} | {
        "kind": "flat",
        "currency": currency,
        "min_days": "2",
        "max_days": "5",
        "position": "0",
    }


def _method_values(form: Any) -> dict[str, str]:
    values = {n: text(form, n) for n in _METHOD_FIELDS}
    values["currency"] = values["currency"].upper()
    return values


async def _shipping_page(
    request: Request,
    uow: UnitOfWork,
    *,
    zone: dict[str, str] | None = None,
    zone_errors: Errors | None = None,
    method: dict[str, str] | None = None,
    method_errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    zones = await checkout.list_zones(uow)
    methods = await checkout.list_shipping_methods(uow)
    by_zone: dict[str, list[checkout.ShippingMethodInfo]] = {z.id: [] for z in zones}
    for m in methods:
        by_zone.setdefault(m.zone_id, []).append(m)
    context = {
        "zones": zones,
        "methods_by_zone": by_zone,
        "zone": zone or _zone_values(),
        "zone_errors": zone_errors or {},
        "method": method or _blank_method(runtime_of(request).settings.currency),
        "method_errors": method_errors or {},
        "zone_options": [("", "Choose a zone"), *((z.id, z.name) for z in zones)],
        "kinds": METHOD_KINDS,
    }
    return render(request, "admin/shipping/index.html", context, status_code=status_code)


@router.get("/shipping")
async def shipping(request: Request, uow: UowDep, _staff: PageStaff) -> HTMLResponse:
    return await _shipping_page(request, uow)


def _rename(mapping: dict[str, str]) -> Callable[[str], str]:
    def rename(field: str) -> str:
        base = field.split(".")[0].split("[")[0]
        return mapping.get(base, base)

    return rename


@router.post("/shipping/zones", dependencies=[CsrfChecked], response_model=None)
async def create_zone(request: Request, uow: UowDep, _staff: PageStaff) -> HTMLResponse | Response:
    values = _zone_values(await read_form(request))
    countries = [c.upper() for c in _SEPARATORS.split(values["countries"]) if c]
    rename = _rename({"name": "zone_name"})
    errors: Errors = {}
    body: ZoneIn | None = None
    try:
        body = ZoneIn.model_validate({"name": values["zone_name"], "countries": countries})
    except ValidationError as exc:
        for error in exc.errors():
            loc = error.get("loc", ())
            if len(loc) == 2 and loc[0] == "countries" and isinstance(loc[1], int):
                errors.setdefault("countries", f"{countries[loc[1]]!r} is not a two-letter code")
        for field, message in schema_errors(exc, rename).items():
            errors.setdefault(field, message)
    if body is None or errors:
        return await _shipping_page(request, uow, zone=values, zone_errors=errors, status_code=422)
    try:
        zone = await checkout.create_zone(uow, name=body.name, countries=body.countries)
    except Problem as problem:
        found = problem_errors(problem, rename)
        if found is None and problem.code == "zone_exists":
            found = {"zone_name": problem.detail}
        if found is None:
            raise
        return await _shipping_page(request, uow, zone=values, zone_errors=found, status_code=422)
    response = redirect("/admin/shipping")
    flash(request, response, f"Zone “{zone.name}” created; now give it a method", "success")
    return response


def _bands(raw: str, errors: Errors) -> list[dict[str, Any]]:
    """Lines of "<up to grams> <price>" ("* 49.90" for any weight) as the schema's bands."""
    bands: list[dict[str, Any]] = []
    for number, line in enumerate((ln for ln in raw.splitlines() if ln.strip()), start=1):
        parts = line.split()
        if len(parts) != 2:
            errors.setdefault(
                "weight_bands", f"line {number}: write grams and price, e.g. 1000 9.90"
            )
            continue
        grams, price = parts
        up_to: int | None = None
        if grams.lower() not in OPEN_ENDED:
            try:
                up_to = int(grams)
            except ValueError:
                errors.setdefault("weight_bands", f"line {number}: {grams!r} is not whole grams")
                continue
        bands.append({"up_to_grams": up_to, "price": price})
    return bands


@router.post("/shipping/methods", dependencies=[CsrfChecked], response_model=None)
async def create_method(
    request: Request, uow: UowDep, _staff: PageStaff
) -> HTMLResponse | Response:
    values = _method_values(await read_form(request))
    errors: Errors = {}
    rename = _rename({"name": "method_name", "amount": "price"})
    data: dict[str, Any] = {
        "zone_id": values["zone_id"],
        "code": values["code"],
        "name": values["method_name"],
        "kind": values["kind"],
        "price": values["price"] or "0",
        "currency": values["currency"],
        "free_over": values["free_over"] or None,
        "weight_bands": _bands(values["weight_bands"], errors),
        "min_days": whole_number(values["min_days"], "min_days", errors, default=2),
        "max_days": whole_number(values["max_days"], "max_days", errors, default=5),
        "position": whole_number(values["position"], "position", errors, default=0),
    }
    body: ShippingMethodIn | None = None
    try:
        body = ShippingMethodIn.model_validate(data)
    except ValidationError as exc:
        for field, message in schema_errors(exc, rename, lines=("weight_bands",)).items():
            errors.setdefault(field, message)
    if body is None or errors:
        return await _shipping_page(
            request, uow, method=values, method_errors=errors, status_code=422
        )
    try:
        created = await checkout.add_shipping_method(uow, body)
    except Problem as problem:
        found = problem_errors(problem, rename, lines=("weight_bands",))
        if found is None and problem.code == "shipping_method_exists":
            found = {"code": problem.detail}
        if found is None:
            raise
        return await _shipping_page(
            request, uow, method=values, method_errors=found, status_code=422
        )
    response = redirect("/admin/shipping")
    flash(
        request,
        response,
        f"Method “{created.name}” ({created.code}) added to {created.zone_name}",
        "success",
    )
    return response


# --------------------------------------------------------------------------------------------
# Tax


def _rate_values(form: Any = None) -> dict[str, str]:
    names = ("country", "region", "tax_class", "rate")
    if form is None:
        return {"country": "", "region": "", "tax_class": "standard", "rate": ""}
    values = {n: text(form, n) for n in names}
    values["country"] = values["country"].upper()
    values["region"] = values["region"].upper()
    return values


async def _tax_page(
    request: Request,
    uow: UnitOfWork,
    *,
    country: str | None = None,
    rate: dict[str, str] | None = None,
    rate_errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    rates = await checkout.list_tax_rates(uow, country)
    context = {
        "rates": [(r, checkout.percent_text(r.rate_bps)) for r in rates],
        "country": country or "",
        "rate": rate or _rate_values(),
        "rate_errors": rate_errors or {},
        "prices_include_tax": await checkout.prices_include_tax(uow),
    }
    return render(request, "admin/tax/index.html", context, status_code=status_code)


@router.get("/tax")
async def tax(
    request: Request,
    uow: UowDep,
    _staff: PageStaff,
    country: Annotated[str, Query(max_length=2)] = "",
) -> HTMLResponse:
    code = country.strip().upper()
    return await _tax_page(request, uow, country=code if re.fullmatch("[A-Z]{2}", code) else None)


@router.post("/tax/rates", dependencies=[CsrfChecked], response_model=None)
async def set_rate(request: Request, uow: UowDep, _staff: PageStaff) -> HTMLResponse | Response:
    values = _rate_values(await read_form(request))
    errors: Errors = {}
    rename = _rename({"rate_bps": "rate"})
    data = {
        "country": values["country"],
        "region": values["region"] or None,
        "tax_class": values["tax_class"],
        "rate": values["rate"],
    }
    body: TaxRateIn | None = None
    try:
        body = TaxRateIn.model_validate(data)
    except ValidationError as exc:
        errors.update(schema_errors(exc, rename))
    if body is None or errors:
        return await _tax_page(request, uow, rate=values, rate_errors=errors, status_code=422)
    try:
        saved = await checkout.save_tax_rate(uow, body)
    except Problem as problem:
        found = problem_errors(problem, rename)
        if found is None:
            raise
        return await _tax_page(request, uow, rate=values, rate_errors=found, status_code=422)
    where = saved.country + (f"-{saved.region}" if saved.region else "")
    response = redirect("/admin/tax")
    flash(
        request,
        response,
        f"Tax rate for {where}, class {saved.tax_class}: {checkout.percent_text(saved.rate_bps)} %",
        "success",
    )
    return response


@router.post("/tax/settings", dependencies=[CsrfChecked])
async def set_prices_include_tax(request: Request, uow: UowDep, _staff: PageStaff) -> Response:
    include = text(await read_form(request), "prices_include_tax") == "yes"
    await checkout.set_prices_include_tax(uow, include)
    response = redirect("/admin/tax")
    message = (
        "Catalog prices now include tax"
        if include
        else "Catalog prices are now before tax; tax is added at checkout"
    )
    flash(request, response, message, "success")
    return response
