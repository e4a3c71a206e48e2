"""Back office: promo codes (list with redemptions, create, switch off and on).

A code is read from the form, validated with the checkout API's schema and made by the checkout
service exactly as ``POST /api/admin/checkout/promo-codes`` makes it; its figures are checked
there (:func:`mercato.checkout.service.check_promo`), not here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.checkout import service as checkout
from mercato.checkout.schemas import PromoIn
from mercato.money import format_minor
from mercato.problems import Problem
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.cfg_forms import (
    Errors,
    checked,
    problem_errors,
    read_form,
    schema_errors,
    text,
    when,
    whole_number,
)
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, redirect, render

router = APIRouter()

KINDS = [("percent", "Percentage off"), ("fixed", "Fixed amount off")]


def _value_text(promo: checkout.PromoInfo, shop_currency: str) -> str:
    if promo.kind == "percent":
        return f"{checkout.percent_text(promo.value)} %"
    currency = promo.currency or shop_currency  # a fixed amount always names one
    return f"{format_minor(promo.value, currency)} {currency}"


@router.get("/promos")
async def promo_list(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse:
    currency = runtime.settings.currency
    rows = [
        {"promo": row.promo, "value": _value_text(row.promo, currency), "counts": row.counts}
        for row in await checkout.list_promos_with_uses(uow)
    ]
    return render(request, "admin/promos/list.html", {"rows": rows})


def _blank() -> dict[str, Any]:
    return {
        "code": "",
        "kind": "percent",
        "value": "",
        "currency": "",
        "min_subtotal": "",
        "starts_at": "",
        "ends_at": "",
        "usage_limit": "",
        "per_customer_limit": "",
        "active": True,
    }


def _form_page(
    request: Request, values: dict[str, Any], errors: Errors | None = None, status_code: int = 200
) -> HTMLResponse:
    context = {"values": values, "errors": errors or {}, "kinds": KINDS}
    return render(request, "admin/promos/new.html", context, status_code=status_code)


@router.get("/promos/new")
async def new_promo(request: Request, _staff: PageStaff) -> HTMLResponse:
    return _form_page(request, _blank())


@router.post("/promos", dependencies=[CsrfChecked], response_model=None)
async def create_promo(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse | Response:
    form = await read_form(request)
    values: dict[str, Any] = {
        "code": text(form, "code"),
        "kind": text(form, "kind"),
        "value": text(form, "value"),
        "currency": text(form, "currency").upper(),
        "min_subtotal": text(form, "min_subtotal"),
        "starts_at": text(form, "starts_at"),
        "ends_at": text(form, "ends_at"),
        "usage_limit": text(form, "usage_limit"),
        "per_customer_limit": text(form, "per_customer_limit"),
        "active": checked(form, "active"),
    }
    errors: Errors = {}
    data: dict[str, Any] = {
        "code": values["code"],
        "kind": values["kind"],
        "value": values["value"],
        "currency": values["currency"] or None,
        "min_subtotal": values["min_subtotal"] or "0",
        "starts_at": when(values["starts_at"], "starts_at", errors),
        "ends_at": when(values["ends_at"], "ends_at", errors),
        "usage_limit": whole_number(values["usage_limit"], "usage_limit", errors),
        "per_customer_limit": whole_number(
            values["per_customer_limit"], "per_customer_limit", errors
        ),
        "active": values["active"],
    }
    try:
        body = PromoIn.model_validate(data)
    except ValidationError as exc:
        for field, message in schema_errors(exc).items():
            errors.setdefault(field, message)
        return _form_page(request, values, errors, status_code=422)
    try:
        if errors:
            checkout.check_promo(body, runtime.settings.currency)  # shown with the form's own
            return _form_page(request, values, errors, status_code=422)
        promo = await checkout.create_promo(uow, body, runtime.settings.currency)
    except Problem as problem:
        found = problem_errors(problem)
        if found is None and problem.code == "promo_code_exists":
            found = {"code": problem.detail}
        if found is None:
            raise
        return _form_page(request, {**values}, {**found, **errors}, status_code=422)
    response = redirect("/admin/promos")
    flash(request, response, f"Promo code {promo.code} created", "success")
    return response


@router.post("/promos/{promo_id}/active", dependencies=[CsrfChecked])
async def switch_promo(promo_id: str, request: Request, uow: UowDep, _staff: PageStaff) -> Response:
    active = text(await read_form(request), "active") == "1"
    promo = await checkout.set_promo_active(uow, promo_id, active)
    response = redirect("/admin/promos")
    state = "active again" if promo.active else "switched off: checkouts refuse it from now on"
    flash(request, response, f"Promo code {promo.code} is {state}", "success")
    return response
