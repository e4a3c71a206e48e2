"""Back office: promo codes (list with redemptions, create, switch off and on).

A code is validated with the checkout API's schema and made by the checkout service exactly as
``POST /api/admin/checkout/promo-codes`` makes it; percentages become basis points and amounts
minor units there, not here."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.checkout import service as checkout
from mercato.checkout.schemas import PromoIn, percent_to_bps
from mercato.money import MoneyError, format_minor, to_minor
from mercato.problems import Problem
from mercato.runtime import SessionDep
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


def _value_text(promo: checkout.PromoInfo) -> str:
    if promo.kind == "percent":
        return f"{checkout.percent_text(promo.value)} %"
    return f"{format_minor(promo.value, promo.currency or 'XXX')} {promo.currency}"


@router.get("/promos")
async def promo_list(request: Request, session: SessionDep, _staff: PageStaff) -> HTMLResponse:
    promos = await checkout.list_promo_codes(session)
    rows: list[dict[str, Any]] = []
    for promo in promos:
        counts = await checkout.promo_redemption_counts(session, promo.id)
        rows.append({"promo": promo, "value": _value_text(promo), "counts": counts})
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


def _minor(value: str, currency: str, field: str, errors: Errors) -> int | None:
    if field in errors:
        return None
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        errors[field] = str(exc)
        return None


@router.post("/promos", dependencies=[CsrfChecked], response_model=None)
async def create_promo(
    request: Request, session: SessionDep, _staff: PageStaff
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
    body: PromoIn | None = None
    try:
        body = PromoIn.model_validate(data)
    except ValidationError as exc:
        for field, message in schema_errors(exc).items():
            errors.setdefault(field, message)
    amount: int | None = None
    if body is not None and body.kind == "percent":
        try:
            amount = percent_to_bps(body.value)
        except ValueError as exc:
            errors["value"] = str(exc)
        else:
            if amount == 0:
                errors["value"] = "must be more than 0"
    elif body is not None:
        if body.currency is None:
            errors["currency"] = "a fixed-amount code needs a currency"
        else:
            amount = _minor(body.value, body.currency, "value", errors)
    minimum = (
        _minor(body.min_subtotal, body.currency or "XXX", "min_subtotal", errors)
        if body is not None
        else None
    )
    if body is None or amount is None or minimum is None or errors:
        return _form_page(request, values, errors, status_code=422)
    conn = await session.connection()
    try:
        async with session.begin_nested():
            promo = await checkout.create_promo_code(
                conn,
                code=body.code,
                kind=body.kind,
                value=amount,
                currency=body.currency,
                min_subtotal=minimum,
                starts_at=body.starts_at,
                ends_at=body.ends_at,
                usage_limit=body.usage_limit,
                per_customer_limit=body.per_customer_limit,
                active=body.active,
            )
    except Problem as problem:
        found = problem_errors(problem)
        if found is None and problem.code == "promo_code_exists":
            found = {"code": problem.detail}
        if found is None:
            raise
        return _form_page(request, values, found, status_code=422)
    response = redirect("/admin/promos")
    flash(request, response, f"Promo code {promo.code} created", "success")
    return response


@router.post("/promos/{promo_id}/active", dependencies=[CsrfChecked])
async def switch_promo(
    promo_id: str, request: Request, session: SessionDep, _staff: PageStaff
) -> Response:
    active = text(await read_form(request), "active") == "1"
    promo = await checkout.set_promo_active(session, promo_id, active)
    response = redirect("/admin/promos")
    state = "active again" if promo.active else "switched off: checkouts refuse it from now on"
    flash(request, response, f"Promo code {promo.code} is {state}", "success")
    return response
