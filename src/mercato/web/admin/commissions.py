"""Back office: commission rules, ``/admin/commissions``. Every rule, in force or not, most
specific scope first (seller + category, seller, category, the default), a form for a new one
and a button taking one out of force. The form is validated with the staff API's schema and the
rule made by the marketplace service exactly as ``POST /api/admin/commission-rules`` makes it: a
rule overlapping another of the same scope and currency is refused there, and said next to the
form's "Valid from"."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.db import UnitOfWork
from mercato.marketplace import service as marketplace
from mercato.marketplace.schemas import CommissionRuleIn, rule_draft
from mercato.money import format_minor
from mercato.problems import Problem
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.cfg_forms import Errors, problem_errors, read_form, schema_errors, text, when
from mercato.web.admin.ops_common import run_in_unit
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import flash, redirect, render

router = APIRouter()

SCOPE_WORDS = {
    "seller_category": "Seller in a category",
    "seller": "Seller",
    "category": "Category",
    "default": "Default",
}
FIELDS = (
    "seller_id",
    "category_id",
    "rate",
    "currency",
    "min_commission",
    "max_commission",
    "valid_from",
    "valid_to",
)


def rate_text(rate_bp: int) -> str:
    """Basis points as the percentage staff typed: 1250 → "12.5 %", 1000 → "10 %"."""
    whole, part = divmod(rate_bp, 100)
    return f"{whole}.{part:02d}".rstrip("0").rstrip(".") + " %"


def bound_text(value: int | None, currency: str) -> str:
    return "" if value is None else f"{format_minor(value, currency)} {currency}"


@router.get("/commissions", response_class=HTMLResponse)
async def rule_list(request: Request, uow: UowDep, _staff: PageStaff) -> HTMLResponse:
    found = await marketplace.commission_rules_page(uow)
    return render(
        request,
        "admin/commissions/list.html",
        {
            "page": found,
            "scope_words": SCOPE_WORDS,
            "rate_text": rate_text,
            "bound_text": bound_text,
        },
    )


def _form_page(
    request: Request,
    found: marketplace.RulesPage,
    values: dict[str, Any],
    errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    sellers = [("", "Every seller")] + [(s.id, s.name) for s in found.sellers.values()]
    categories = [("", "Every category"), *found.categories.items()]
    return render(
        request,
        "admin/commissions/new.html",
        {"values": values, "errors": errors or {}, "sellers": sellers, "categories": categories},
        status_code=status_code,
    )


@router.get("/commissions/new", response_class=HTMLResponse)
async def new_rule(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse:
    blank = dict.fromkeys(FIELDS, "")
    blank["currency"] = runtime.settings.currency
    return _form_page(request, await marketplace.commission_rules_page(uow), blank)


@router.post("/commissions", dependencies=[CsrfChecked], response_model=None)
async def create_rule(
    request: Request, uow: UowDep, runtime: RuntimeDep, staff: PageStaff
) -> HTMLResponse | Response:
    form = await read_form(request)
    values = {name: text(form, name) for name in FIELDS}
    values["currency"] = values["currency"].upper()
    errors: Errors = {}
    data: dict[str, Any] = {
        "rate": values["rate"],
        "currency": values["currency"] or None,
        "seller_id": values["seller_id"] or None,
        "category_id": values["category_id"] or None,
        "min_commission": values["min_commission"] or None,
        "max_commission": values["max_commission"] or None,
        "valid_from": when(values["valid_from"], "valid_from", errors),
        "valid_to": when(values["valid_to"], "valid_to", errors),
    }
    try:
        body = CommissionRuleIn.model_validate(data)
    except ValidationError as exc:
        errors = {**schema_errors(exc), **errors}
    if errors:
        found = await marketplace.commission_rules_page(uow)
        return _form_page(request, found, values, errors, status_code=422)
    try:
        async with uow.begin_nested():
            rule = await marketplace.create_rule(
                uow, rule_draft(body, runtime.settings.currency), staff.id
            )
    except Problem as problem:
        refused = problem_errors(problem)
        if refused is None:
            raise
        found = await marketplace.commission_rules_page(uow)
        return _form_page(request, found, values, refused, status_code=422)
    response = redirect("/admin/commissions")
    flash(request, response, f"Commission rule of {rate_text(rule.rate_bp)} created", "success")
    return response


@router.post("/commissions/{rule_id}/deactivate", dependencies=[CsrfChecked])
async def deactivate_rule(
    rule_id: str, request: Request, runtime: RuntimeDep, _staff: PageStaff
) -> Response:
    async def work(uow: UnitOfWork) -> marketplace.RuleInfo:
        return await marketplace.deactivate_rule(uow, rule_id)

    return await run_in_unit(
        request,
        f"/admin/commissions#rule-{quote(rule_id, safe='')}",
        runtime,
        work,
        "The rule is out of force: sales from now on no longer use it",
    )
