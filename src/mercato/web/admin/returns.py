"""Back office: returns. ``/admin/returns`` is the queue (by status, oldest first);
``/admin/returns/{id}`` approves or rejects a request, receives the goods (each line back on
the shelf or written off, at a warehouse) and refunds them, through the returns service like
the staff API. Receiving refunds at once; the refund button retries one the payment provider
had not confirmed (it is never made twice). The receipt's checks are the service's: the page
only reads the form and puts each problem next to its line."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from mercato.db import UnitOfWork
from mercato.fulfilment import service as fulfilment
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.problems import Problem, not_found
from mercato.returns import service
from mercato.runtime import RuntimeDep, UowDep
from mercato.text import PlainText
from mercato.web.admin.ops_common import actor_of, problem_message, run_action, run_in_unit
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import field_errors, flash, money, redirect, render

router = APIRouter()

LIST_LIMIT = 100
# Free text refuses control characters (mercato.text): a 422 page naming the field.
Note = Annotated[str, PlainText(max_length=1000), Form()]
_LINE_FIELD = re.compile(r"^lines\[(\d+)\]\.(\w+)$")


def _return_url(return_id: str) -> str:
    return f"/admin/returns/{return_id}"


@router.get("/returns", response_class=HTMLResponse)
async def return_list(
    request: Request,
    staff: PageStaff,
    uow: UowDep,
    status: Annotated[str, Query(max_length=16)] = "",
) -> HTMLResponse:
    chosen = status if status in service.RETURN_STATUSES else ""
    found = await service.list_returns(uow, status=chosen or None, limit=LIST_LIMIT)
    counts = await service.count_by_status(uow)
    return render(
        request,
        "admin/returns/list.html",
        {
            "returns": found,
            "status": chosen,
            "statuses": service.RETURN_STATUSES,
            "counts": counts,
            "total": sum(counts.values()),
            "limit": LIST_LIMIT,
        },
    )


async def _detail(
    request: Request,
    uow: UnitOfWork,
    return_id: str,
    *,
    receive_form: dict[str, str] | None = None,
    receive_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    found = await service.get_return(uow, return_id)
    if found is None:
        raise not_found("Return", return_id)
    order = await orders.get_order(uow, found.order_id)
    lines = {line.id: line for line in order.lines} if order else {}
    defaults: dict[str, str] = {}
    for line in found.lines:
        code = await fulfilment.warehouse_of_line(uow, found.order_id, line.order_line_id)
        defaults[f"disposition_{line.order_line_id}"] = "restock"
        defaults[f"warehouse_{line.order_line_id}"] = code or ""
    return render(
        request,
        "admin/returns/detail.html",
        {
            "ret": found,
            "order": order,
            "lines": lines,
            "warehouses": await inventory.list_warehouses(uow),
            "dispositions": service.DISPOSITIONS,
            "receive_form": receive_form or defaults,
            "receive_errors": receive_errors or {},
        },
        status_code=status_code,
    )


@router.get("/returns/{return_id}", response_class=HTMLResponse)
async def return_detail(
    return_id: str, request: Request, staff: PageStaff, uow: UowDep
) -> HTMLResponse:
    return await _detail(request, uow, return_id)


DECIDED = {
    "approve": "Return approved: the customer may send the goods",
    "reject": "Return rejected",
}


def _refund_message(found: service.ReturnInfo) -> str:
    amount = money(found.refund_amount, found.currency)
    if found.status == "refunded":
        return f"Goods received; {amount} refunded"
    return f"Goods received; the refund of {amount} is not confirmed yet and will be retried"


def _receipt(values: dict[str, str]) -> list[service.Disposition]:
    """The form's lines (``disposition_<line id>``, ``warehouse_<line id>``), in form order."""
    return [
        service.Disposition(
            key.removeprefix("disposition_"),
            value,
            values.get("warehouse_" + key.removeprefix("disposition_"), "").strip() or None,
        )
        for key, value in values.items()
        if key.startswith("disposition_")
    ]


def _line_errors(
    problem: Problem, given: list[service.Disposition], form_keys: set[str]
) -> dict[str, str]:
    """The service names a line's problem ``lines[<n>].<field>``, n in the order the lines were
    given; the form names its fields ``<field>_<line id>``."""
    errors: dict[str, str] = {}
    for name, message in field_errors(problem).items():
        match = _LINE_FIELD.match(name)
        if match and int(match.group(1)) < len(given):
            line_id = given[int(match.group(1))].order_line_id
            key = f"{match.group(2)}_{line_id}"
            errors[key if key in form_keys else f"disposition_{line_id}"] = message
        else:
            errors["form"] = f"{name}: {message}"
    return errors


@router.post("/returns/{return_id}/receive", dependencies=[CsrfChecked])
async def receive(
    return_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    """The goods arrived: each line restocked or written off at a warehouse, then refunded."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str) and k != "csrf_token"}
    given = _receipt(values)
    try:
        after = await service.receive_return(
            runtime,
            return_id,
            given,
            actor=actor_of(staff),
            refund_shipping_on_full_return=runtime.settings.refund_shipping_on_full_return,
        )
    except Problem as exc:
        line_errors = _line_errors(exc, given, set(values)) if exc.status == 422 else {}
        if line_errors:
            async with runtime.db.transaction() as uow:
                return await _detail(
                    request,
                    uow,
                    return_id,
                    receive_form=values,
                    receive_errors=line_errors,
                    status_code=422,
                )
        if exc.status in (401, 403, 404):
            raise
        response = redirect(_return_url(return_id))
        flash(request, response, problem_message(exc), "error")
        return response
    response = redirect(_return_url(return_id))
    flash(
        request,
        response,
        _refund_message(after),
        "success" if after.status == "refunded" else "info",
    )
    return response


@router.post("/returns/{return_id}/refund", dependencies=[CsrfChecked])
async def refund(
    return_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    """Retry the refund of received goods (made once, whatever the retries)."""

    async def act() -> service.ReturnInfo:
        after = await service.refund_return(runtime, return_id, actor=actor_of(staff))
        if after.refund_pending:
            raise Problem(
                503,
                "refund_pending",
                "The payment provider has not confirmed the refund yet; try again shortly",
            )
        return after

    return await run_action(
        request,
        _return_url(return_id),
        act,
        lambda r: f"Refunded {money(r.refund_amount, r.currency)}",
    )


# After /receive and /refund: a path that matches this one is never tried against those.
@router.post("/returns/{return_id}/{decision}", dependencies=[CsrfChecked])
async def decide(
    return_id: str,
    decision: service.Decision,
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    note: Note = "",
) -> Response:
    """Approve or reject the request, with an optional note."""
    return await run_in_unit(
        request,
        _return_url(return_id),
        runtime,
        lambda uow: service.decide_return(
            uow, return_id, decision, actor=actor_of(staff), note=note or None
        ),
        DECIDED[decision],
    )
