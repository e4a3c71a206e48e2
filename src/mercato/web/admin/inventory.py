"""Back office: inventory. ``/admin/inventory`` lists the warehouses, the stock of each variant
in each warehouse (searched by SKU, paged by SKU), the active reservations, and the forms to
receive goods and correct a count; ``/admin/inventory/check`` runs the ledger check (the page
loads it after itself, so a large shop's page stays quick). Receiving and adjusting call the
inventory service exactly as the staff API does, each in a unit of work of its own (retried on
a deadlock, as anything that locks stock rows is); a refusal shows next to the field it is
about."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork
from mercato.inventory import service
from mercato.problems import Problem
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.text import PlainLine
from mercato.web.admin.ops_common import parse_int, problem_message, with_query
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter()

PAGE_SIZE = 50
RESERVATIONS_SHOWN = 50
MAX_REFERENCE = 80
MAX_REASON = 200

# Free text refuses control characters (mercato.text): a 422 page naming the field.
Field = Annotated[str, PlainLine(max_length=300), Form()]


async def _index(
    request: Request,
    uow: UnitOfWork,
    threshold: int,
    *,
    sku: str = "",
    after: str = "",
    receive_form: dict[str, str] | None = None,
    receive_errors: dict[str, str] | None = None,
    adjust_form: dict[str, str] | None = None,
    adjust_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    warehouses = await service.list_warehouses(uow)
    variants = await catalog.variants_by_sku(
        uow, contains=sku or None, after_sku=after or None, limit=PAGE_SIZE + 1
    )
    next_after = variants[PAGE_SIZE - 1].sku if len(variants) > PAGE_SIZE else None
    variants = variants[:PAGE_SIZE]
    levels = await service.stock_for_variants(uow, [v.id for v in variants])
    rows: list[dict[str, Any]] = []
    for v in variants:
        by_code = {s.warehouse_code: s for s in levels.get(v.id, [])}
        rows.append(
            {
                "variant": v,
                "levels": by_code,
                "available": sum(s.available for s in by_code.values()),
            }
        )
    held = await service.active_reservations(uow, limit=RESERVATIONS_SHOWN)
    held_variants = await catalog.get_variants(uow, [r.variant_id for r in held])
    default_warehouse = warehouses[0].code if warehouses else ""
    exact = next((v for v in variants if v.sku == sku), None)
    prefill = {"sku": exact.sku if exact else "", "warehouse": default_warehouse}
    return render(
        request,
        "admin/inventory/index.html",
        {
            "warehouses": warehouses,
            "rows": rows,
            "sku": sku,
            "paged": bool(after),
            "first_url": with_query("/admin/inventory", sku=sku),
            "next_url": with_query("/admin/inventory", sku=sku, after=next_after)
            if next_after
            else None,
            "threshold": threshold,
            "reservations": held,
            "reservation_variants": held_variants,
            "receive_form": receive_form or prefill,
            "receive_errors": receive_errors or {},
            "adjust_form": adjust_form or prefill,
            "adjust_errors": adjust_errors or {},
        },
        status_code=status_code,
    )


@router.get("/inventory", response_class=HTMLResponse)
async def inventory_index(
    request: Request,
    staff: PageStaff,
    uow: UowDep,
    runtime: RuntimeDep,
    sku: Annotated[str, Query(max_length=64)] = "",
    after: Annotated[str, Query(max_length=64)] = "",
) -> HTMLResponse:
    return await _index(
        request, uow, runtime.settings.low_stock_threshold, sku=sku.strip(), after=after
    )


@router.get("/inventory/check", response_class=HTMLResponse)
async def ledger_check(request: Request, staff: PageStaff, uow: UowDep) -> HTMLResponse:
    """Every stock row against its ledger and its active reservations (one snapshot)."""
    differences = await service.check_ledger(uow)
    variants = await catalog.get_variants(uow, {d.variant_id for d in differences})
    codes = {w.id: w.code for w in await service.list_warehouses(uow)}
    template = (
        "admin/inventory/_check.html"
        if request.headers.get("HX-Request")
        else "admin/inventory/check.html"
    )
    return render(
        request,
        template,
        {
            "ok": not differences,
            "rule": service.LEDGER_RULE,
            "stock_rows": await service.count_stock_rows(uow),
            "differences": differences,
            "variants": variants,
            "warehouse_codes": codes,
        },
    )


def _form_errors(problem: Problem, fields: tuple[str, ...]) -> dict[str, str]:
    errors = {k: v for k, v in field_errors(problem).items() if k in fields}
    if not errors:
        errors["form"] = problem_message(problem)
    return errors


def _required(sku: str, warehouse: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not sku.strip():
        errors["sku"] = "is required"
    if not warehouse.strip():
        errors["warehouse"] = "is required"
    return errors


async def _change_stock(
    request: Request,
    runtime: Runtime,
    *,
    form_name: str,
    form: dict[str, str],
    errors: dict[str, str],
    change: Callable[[UnitOfWork, catalog.VariantInfo], Awaitable[service.StockLevel]] | None,
    problem_errors: Callable[[Problem], dict[str, str]],
    done: Callable[[service.StockLevel], str],
) -> Response:
    """Run a stock change on the form's SKU in a unit of work of its own (``change`` is None
    when the form did not parse): back to the page with the SKU and a flash, or the page again
    (422) with the form's errors."""
    sku = form["sku"].strip()
    level: service.StockLevel | None = None
    if not errors and change is not None:
        act = change

        async def work(uow: UnitOfWork) -> service.StockLevel:
            return await act(uow, await service.resolve_variant(uow, sku))

        try:
            level = await runtime.db.run(work)
        except Problem as exc:
            errors = problem_errors(exc)
    if level is None:
        shown: dict[str, Any] = {f"{form_name}_form": form, f"{form_name}_errors": errors}
        async with runtime.db.transaction() as uow:
            return await _index(
                request,
                uow,
                runtime.settings.low_stock_threshold,
                status_code=422,
                sku=sku,
                **shown,
            )
    response = redirect(with_query("/admin/inventory", sku=sku))
    flash(request, response, done(level), "success")
    return response


@router.post("/inventory/receive", dependencies=[CsrfChecked])
async def receive(
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    sku: Field = "",
    warehouse: Field = "",
    quantity: Field = "",
    reference: Field = "",
) -> Response:
    """Goods arrived: ``quantity`` units of ``sku`` onto ``warehouse``'s shelf."""
    form = {"sku": sku, "warehouse": warehouse, "quantity": quantity, "reference": reference}
    errors = _required(sku, warehouse)
    units = parse_int(quantity, "quantity", errors, minimum=1, maximum=service.MAX_QUANTITY)
    if len(reference.strip()) > MAX_REFERENCE:
        errors["reference"] = f"must be at most {MAX_REFERENCE} characters"

    async def received(uow: UnitOfWork, variant: catalog.VariantInfo) -> service.StockLevel:
        assert units is not None
        return await service.receive(
            uow, variant, warehouse.strip(), units, reference.strip() or None
        )

    return await _change_stock(
        request,
        runtime,
        form_name="receive",
        form=form,
        errors=errors,
        change=received if units is not None else None,
        problem_errors=lambda exc: _form_errors(exc, tuple(form)),
        done=lambda level: (
            f"Received {units} × {sku.strip()} at {level.warehouse_code}: "
            f"{level.on_hand} on hand, {level.available} available"
        ),
    )


@router.post("/inventory/adjust", dependencies=[CsrfChecked])
async def adjust(
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    sku: Field = "",
    warehouse: Field = "",
    delta: Field = "",
    reason: Field = "",
) -> Response:
    """Correct the shelf count by ``delta`` (never below what is reserved), with a reason."""
    form = {"sku": sku, "warehouse": warehouse, "delta": delta, "reason": reason}
    errors = _required(sku, warehouse)
    change = parse_int(
        delta,
        "delta",
        errors,
        minimum=-service.MAX_QUANTITY,
        maximum=service.MAX_QUANTITY,
        nonzero=True,
    )
    if not reason.strip():
        errors["reason"] = "is required: say why the count changes"
    elif len(reason.strip()) > MAX_REASON:
        errors["reason"] = f"must be at most {MAX_REASON} characters"

    async def adjusted(uow: UnitOfWork, variant: catalog.VariantInfo) -> service.StockLevel:
        assert change is not None
        return await service.adjust(uow, variant, warehouse.strip(), change, reason.strip())

    def adjust_errors(exc: Problem) -> dict[str, str]:
        if exc.code == "insufficient_stock":
            return {"delta": problem_message(exc)}
        return _form_errors(exc, tuple(form))

    return await _change_stock(
        request,
        runtime,
        form_name="adjust",
        form=form,
        errors=errors,
        change=adjusted if change is not None else None,
        problem_errors=adjust_errors,
        done=lambda level: (
            f"Adjusted {sku.strip()} at {level.warehouse_code} by {change:+d}: "
            f"{level.on_hand} on hand, {level.available} available"
        ),
    )
