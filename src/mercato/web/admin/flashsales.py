"""Back office: flash sales (the list, scheduling one, a sale's live counters, ending it now).

The schedule form is read into the API's schema (:class:`~mercato.flashsale.schemas.SaleIn`)
and the sale made by :func:`~mercato.flashsale.service.schedule_sale`, as
``POST /api/admin/flash-sales`` does; the form only turns the SKUs typed into variant ids and
puts each refusal (the schema's, the service's 422 and 409 problems) next to its field. The
sale's page shows :func:`~mercato.flashsale.service.sale_counters` and asks for them again
every few seconds."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.flashsale import service as flashsale
from mercato.flashsale.schemas import SaleIn
from mercato.flashsale.schemas import new_sale as sale_asked
from mercato.problems import Problem
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.web.admin.cfg_forms import (
    Errors,
    local_input,
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

COUNTERS_POLL_SECONDS = 2
_LINE = re.compile(r"^\s*(\S+?)\s*[,;\s]\s*(\d+)\s*$")
# The service names the sale's variants by index (``variants[2].allocation``): each is a line
# of the form's one "variants" field; the currency is the variants' own.
FIELDS = (
    "title",
    "variants",
    "price",
    "starts_at",
    "ends_at",
    "per_customer_limit",
    "admission_rate",
)


def _rename(field: str) -> str:
    return "variants" if field == "currency" else field


# --------------------------------------------------------------------------------------------
# The list and a sale's page


@router.get("/flash-sales")
async def sale_list(request: Request, uow: UowDep, _staff: PageStaff) -> HTMLResponse:
    views = await flashsale.list_sales(uow)
    return render(request, "admin/flashsales/list.html", {"views": views})


def _counters_context(counters: flashsale.SaleCounters) -> dict[str, Any]:
    sale = counters.sale
    return {
        "c": counters,
        "sale": sale,
        "status": sale.status_at(utcnow()),
        "remaining": max(0, sale.remaining),
        "poll_every": COUNTERS_POLL_SECONDS,
    }


@router.get("/flash-sales/new")
async def new_sale(request: Request, runtime: RuntimeDep, _staff: PageStaff) -> HTMLResponse:
    return _form_page(request, runtime, _blank())


@router.get("/flash-sales/{sale_id}")
async def sale_page(
    sale_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse:
    counters = await flashsale.sale_counters(uow, flashsale.gate_for(runtime), sale_id)
    return render(request, "admin/flashsales/sale.html", _counters_context(counters))


@router.get("/flash-sales/{sale_id}/counters")
async def sale_counters(
    sale_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse:
    """The counters alone, which the sale's page asks for every few seconds."""
    counters = await flashsale.sale_counters(uow, flashsale.gate_for(runtime), sale_id)
    return render(request, "admin/flashsales/_counters.html", _counters_context(counters))


@router.post("/flash-sales/{sale_id}/end", dependencies=[CsrfChecked])
async def end_sale(
    sale_id: str, request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> Response:
    sale = await flashsale.end_sale(uow, flashsale.gate_for(runtime), sale_id, reason="staff")
    response = redirect(f"/admin/flash-sales/{sale_id}")
    flash(
        request,
        response,
        f"Flash sale {sale.title} ended: {sale.sold} sold, the rest is back in regular stock",
        "success",
    )
    return response


# --------------------------------------------------------------------------------------------
# Scheduling a sale


def _blank() -> dict[str, str]:
    now = utcnow()
    return {
        "title": "",
        "variants": "",
        "price": "",
        "starts_at": local_input(now.replace(second=0, microsecond=0)),
        "ends_at": "",
        "per_customer_limit": "1",
        "admission_rate": "",
    }


def _form_page(
    request: Request,
    runtime: Runtime,
    values: dict[str, str],
    errors: Errors | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    context = {"values": values, "errors": errors or {}, "currency": runtime.settings.currency}
    return render(request, "admin/flashsales/new.html", context, status_code=status_code)


def _read_lines(value: str, errors: Errors) -> list[tuple[str, int]]:
    """The form's variant lines, "SKU, units" each."""
    found: list[tuple[str, int]] = []
    for n, line in enumerate(value.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if match is None:
            errors.setdefault("variants", f"line {n}: write a SKU and units, e.g. TEE-RED-M, 50")
            continue
        found.append((match.group(1), int(match.group(2))))
    if not found:
        errors.setdefault("variants", "is required: one SKU and its units per line")
    return found


async def _variant_ids(
    uow: UnitOfWork, lines: list[tuple[str, int]], errors: Errors
) -> dict[str, str]:
    """SKU → variant id, an error under "variants" for a SKU that names none."""
    ids: dict[str, str] = {}
    for n, (sku, _) in enumerate(lines, 1):
        variant = await catalog.get_variant_by_sku(uow, sku)
        if variant is None:
            errors.setdefault("variants", f"line {n}: no variant has SKU {sku}")
        else:
            ids[sku] = variant.id
    return ids


def _conflict_errors(problem: Problem, skus: dict[str, str]) -> Errors | None:
    """A 409's message under "variants", naming the SKUs rather than the variant ids."""
    by_id = {v: s for s, v in skus.items()}
    if problem.code == "insufficient_stock":
        lines = problem.extra.get("lines") or []
        short = "; ".join(
            f"{by_id.get(str(x.get('variant_id')), x.get('variant_id'))}: "
            f"{x.get('requested')} requested, {x.get('available')} available"
            for x in lines
            if isinstance(x, dict)
        )
        return {"variants": f"not enough stock to set aside ({short or problem.detail})"}
    if problem.code == "variant_unavailable":
        variant = str(problem.extra.get("variant_id"))
        return {"variants": f"{by_id.get(variant, variant)} is not for sale"}
    return None


@router.post("/flash-sales", dependencies=[CsrfChecked], response_model=None)
async def create_sale(
    request: Request, uow: UowDep, runtime: RuntimeDep, _staff: PageStaff
) -> HTMLResponse | Response:
    form = await read_form(request)
    values = {name: text(form, name) for name in FIELDS}
    errors: Errors = {}
    lines = _read_lines(values["variants"], errors)
    skus = await _variant_ids(uow, lines, errors)
    data: dict[str, Any] = {
        "title": values["title"],
        "variants": [{"variant_id": skus.get(s, s), "allocation": units} for s, units in lines],
        "price": values["price"],
        "starts_at": when(values["starts_at"], "starts_at", errors),
        "ends_at": when(values["ends_at"], "ends_at", errors),
        "per_customer_limit": whole_number(
            values["per_customer_limit"], "per_customer_limit", errors, default=1
        ),
        "admission_rate": whole_number(values["admission_rate"], "admission_rate", errors),
    }
    # Left out when empty or unreadable, so that the schema says "is required".
    data = {k: v for k, v in data.items() if v is not None and v != []}
    try:
        body = SaleIn.model_validate(data)
    except ValidationError as exc:
        found = schema_errors(exc, _rename, lines=("variants",))
        return _form_page(request, runtime, values, {**found, **errors}, status_code=422)
    if errors:
        return _form_page(request, runtime, values, errors, status_code=422)
    try:
        new = sale_asked(body, runtime.settings.currency)
        # A refusal leaves nothing behind: the form is shown again in the same transaction.
        async with uow.begin_nested():
            sale = await flashsale.schedule_sale(uow, new)
    except Problem as problem:
        refused = problem_errors(problem, _rename, lines=("variants",)) or _conflict_errors(
            problem, skus
        )
        if refused is None:
            raise
        return _form_page(request, runtime, values, refused, status_code=problem.status)
    response = redirect(f"/admin/flash-sales/{sale.id}")
    flash(request, response, f"Flash sale {sale.title} scheduled", "success")
    return response
