"""Back office: orders. ``/admin/orders`` searches them (status, customer e-mail, placing day;
newest first, in keyset pages); ``/admin/orders/{id}`` shows one with its lines, totals,
payment, fulfilments, shipments, returns and history, and the forms that move it: allocate,
pick, pack, ship, deliver, retry a capture, cancel, release a cancelled order's payment,
refund received returns, and a manual status change. Which forms are offered is the services'
call (``orders.allowed_actions`` and the fulfilments' and shipments' own states); each form
calls the one service the staff API calls, and a refusal (an invalid transition, a declined
capture) comes back as a message on the order's page.

The forms take no request transaction: each service runs in a unit of work of its own (or
starts a workflow, whose steps do), so nothing here commits."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse

from mercato.db import UnitOfWork
from mercato.fulfilment import service as fulfilment
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem, not_found
from mercato.returns import service as returns
from mercato.runtime import RuntimeDep, UowDep
from mercato.text import PlainLine, PlainText
from mercato.web.admin.ops_common import (
    actor_of,
    day_start,
    parse_day,
    problem_message,
    run_action,
    run_in_unit,
    with_query,
)
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter()

PAGE_SIZE = 25
SHIP_FIELDS = ("carrier", "service", "tracking_number", "fulfilment_id")
STEPS: dict[str, fulfilment.FulfilmentStep] = {"pick": "picked", "pack": "packed"}

# Free text refuses control characters (mercato.text): a 422 page naming the field.
Text = Annotated[str, PlainText(max_length=500), Form()]
Line = Annotated[str, PlainLine(max_length=40), Form()]


def _order_url(order_id: str) -> str:
    return f"/admin/orders/{order_id}"


# -- the list --------------------------------------------------------------------------------------


@router.get("/orders", response_class=HTMLResponse)
async def order_list(
    request: Request,
    staff: PageStaff,
    uow: UowDep,
    runtime: RuntimeDep,
    status: Annotated[str, Query(max_length=24)] = "",
    email: Annotated[str, Query(max_length=254)] = "",
    created_from: Annotated[str, Query(max_length=10)] = "",
    created_to: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str, Query(max_length=1000)] = "",
) -> HTMLResponse:
    errors: dict[str, str] = {}
    if status and status not in orders.STATUSES:
        errors["status"] = "is not an order status"
    start = parse_day(created_from, "created_from", errors)
    last = parse_day(created_to, "created_to", errors)
    if start is not None and last is not None and last < start:
        errors["created_to"] = "must not be before the first day"
    page = orders.OrderPage([], None)
    if not errors:
        filters = orders.OrderFilters(
            status=status or None,
            email=email.strip() or None,
            created_from=day_start(start) if start else None,
            # The last day counts whole: up to the next midnight.
            created_to=day_start(last) + timedelta(days=1) if last else None,
        )
        try:
            page = await orders.search_orders(
                uow,
                filters,
                secret_key=runtime.settings.secret_key,
                cursor=cursor or None,
                limit=PAGE_SIZE,
            )
        except Problem as exc:
            if exc.code == "invalid_cursor":
                errors["cursor"] = "This page link is no longer valid; start from the first page"
            else:
                errors.update(field_errors(exc) or {"status": problem_message(exc)})
    filters_query = {
        "status": status,
        "email": email.strip(),
        "created_from": created_from,
        "created_to": created_to,
    }
    return render(
        request,
        "admin/orders/list.html",
        {
            "orders": page.items,
            "statuses": orders.STATUSES,
            "filters": filters_query,
            "errors": errors,
            "paged": bool(cursor),
            "first_url": with_query("/admin/orders", **filters_query),
            "next_url": (
                with_query("/admin/orders", **filters_query, cursor=page.next_cursor)
                if page.next_cursor
                else None
            ),
        },
        status_code=422 if errors else 200,
    )


# -- one order -------------------------------------------------------------------------------------


async def _detail(
    request: Request,
    uow: UnitOfWork,
    order_id: str,
    *,
    ship_form: dict[str, str] | None = None,
    ship_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    order = await orders.get_order(uow, order_id)
    if order is None:
        raise not_found("Order", order_id)
    payment = await orders.payment_summary(uow, order)
    payment_events = (
        await payments.intent_events(uow, order.payment_intent_id)
        if order.payment_intent_id
        else []
    )
    fulfilments = await fulfilment.fulfilments_for_order(uow, order_id)
    shipments = await fulfilment.shipments_for_order(uow, order_id, include_pending=True)
    order_returns = await returns.returns_for_order(uow, order_id)
    actions = orders.allowed_actions(
        order,
        allocated=bool(fulfilments),
        refunds_waiting=sum(1 for r in order_returns if r.refund_pending),
    )
    carrier_list = [(c.name, c) for c in fulfilment.carriers()]
    return render(
        request,
        "admin/orders/detail.html",
        {
            "order": order,
            "lines": {line.id: line for line in order.lines},
            "payment": payment,
            "payment_events": payment_events,
            "fulfilments": fulfilments,
            "shipments": shipments,
            "returns": order_returns,
            "actions": actions,
            "carriers": carrier_list,
            "services": sorted({s for _, c in carrier_list for s in c.services}),
            "fulfilment_choices": [("", "Every unshipped unit")]
            + [(f.id, f"From {f.warehouse_code} ({f.status})") for f in fulfilments if f.open],
            "ship_form": ship_form or {"carrier": "sandbox", "service": "standard"},
            "ship_errors": ship_errors or {},
        },
        status_code=status_code,
    )


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_detail(
    order_id: str, request: Request, staff: PageStaff, uow: UowDep
) -> HTMLResponse:
    return await _detail(request, uow, order_id)


# -- actions ---------------------------------------------------------------------------------------


@router.post("/orders/{order_id}/allocate", dependencies=[CsrfChecked])
async def allocate(
    order_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    return await run_in_unit(
        request,
        _order_url(order_id),
        runtime,
        lambda uow: fulfilment.allocate_order(uow, order_id),
        lambda found: "Allocated to " + ", ".join(f.warehouse_code for f in found),
    )


@router.post("/orders/{order_id}/fulfilments/{fulfilment_id}/{step}", dependencies=[CsrfChecked])
async def pick_or_pack(
    order_id: str,
    fulfilment_id: str,
    step: Literal["pick", "pack"],
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
) -> Response:
    return await run_in_unit(
        request,
        _order_url(order_id),
        runtime,
        lambda uow: fulfilment.mark_fulfilment(
            uow, fulfilment_id, STEPS[step], actor=actor_of(staff), order_id=order_id
        ),
        lambda found: f"Fulfilment from {found.warehouse_code} marked {STEPS[step]}",
    )


@router.post("/orders/{order_id}/ship", dependencies=[CsrfChecked])
async def ship(
    order_id: str,
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    carrier: Line = "",
    service: Line = "",
    tracking_number: Annotated[str, PlainLine(max_length=200), Form()] = "",
    fulfilment_id: Line = "",
) -> Response:
    """Ship every unshipped unit (of one fulfilment, when chosen). The payment share is
    captured first; a refused capture ships nothing and says so on the page."""
    form = {
        "carrier": carrier,
        "service": service,
        "tracking_number": tracking_number,
        "fulfilment_id": fulfilment_id,
    }
    wanted = fulfilment.ShipmentRequest(
        carrier=carrier.strip(),
        service=service.strip() or None,
        tracking_number=tracking_number.strip() or None,
        fulfilment_id=fulfilment_id or None,
    )
    try:
        shipment = await fulfilment.create_shipment(
            runtime, order_id, wanted, actor=actor_of(staff)
        )
    except Problem as exc:
        errors = {k: v for k, v in field_errors(exc).items() if k in SHIP_FIELDS}
        if errors:
            async with runtime.db.transaction() as uow:
                return await _detail(
                    request, uow, order_id, ship_form=form, ship_errors=errors, status_code=422
                )
        if exc.status in (401, 403, 404):
            raise
        response = redirect(_order_url(order_id))
        flash(request, response, problem_message(exc), "error")
        return response
    response = redirect(_order_url(order_id))
    flash(
        request,
        response,
        f"Shipped with {shipment.carrier}, tracking number {shipment.tracking_number}",
        "success",
    )
    return response


@router.post("/orders/{order_id}/shipments/{shipment_id}/deliver", dependencies=[CsrfChecked])
async def deliver(
    order_id: str, shipment_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    return await run_in_unit(
        request,
        _order_url(order_id),
        runtime,
        lambda uow: fulfilment.deliver_shipment(
            uow, shipment_id, actor=actor_of(staff), order_id=order_id
        ),
        lambda s: f"Shipment {s.tracking_number} marked delivered",
    )


@router.post("/orders/{order_id}/shipments/{shipment_id}/capture", dependencies=[CsrfChecked])
async def retry_capture(
    order_id: str, shipment_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    """A shipment whose capture the provider had not confirmed: ask again with the same
    shipment id (the same idempotency key: never captured twice), as the staff API does."""
    return await run_action(
        request,
        _order_url(order_id),
        lambda: fulfilment.retry_capture(runtime, order_id, shipment_id, actor=actor_of(staff)),
        lambda s: f"Payment captured; shipment {s.tracking_number} is {s.status.replace('_', ' ')}",
    )


def _cancelled_message(order: orders.OrderInfo) -> str:
    if order.payment_released_at is None:
        return "Order cancelled; the payment is not released yet and will be retried"
    return "Order cancelled; the payment was released and the items are back in stock"


@router.post("/orders/{order_id}/cancel", dependencies=[CsrfChecked])
async def cancel(
    order_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep, reason: Text = ""
) -> Response:
    """Cancel an order that has not shipped: the payment is voided (or refunded) and the goods
    go back in stock."""
    return await run_action(
        request,
        _order_url(order_id),
        lambda: orders.cancel_order(
            runtime, order_id, actor=actor_of(staff), reason=reason or None
        ),
        _cancelled_message,
    )


@router.post("/orders/{order_id}/release-payment", dependencies=[CsrfChecked])
async def release_payment(
    order_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    """Finish giving a cancelled order's money back (what the worker retries by itself)."""
    return await run_action(
        request,
        _order_url(order_id),
        lambda: orders.release_payment(runtime, order_id, actor=actor_of(staff)),
        "The payment was released",
    )


@router.post("/orders/{order_id}/refund", dependencies=[CsrfChecked])
async def refund(
    order_id: str, request: Request, staff: PageStaff, runtime: RuntimeDep
) -> Response:
    """Refund the order's received returns whose refund has not gone through."""
    return await run_action(
        request,
        _order_url(order_id),
        lambda: returns.refund_waiting(runtime, order_id, actor=actor_of(staff)),
        lambda n: f"Refunded {n} return(s)",
    )


@router.post("/orders/{order_id}/transition", dependencies=[CsrfChecked])
async def manual_transition(
    order_id: str,
    request: Request,
    staff: PageStaff,
    runtime: RuntimeDep,
    to: Annotated[str, PlainLine(max_length=24), Form()] = "",
    reason: Text = "",
) -> Response:
    """Move the order by hand (manual operations); the state machine still decides, and
    ``cancelled`` runs the whole cancellation, as in the staff API."""
    return await run_action(
        request,
        _order_url(order_id),
        lambda: orders.change_status(
            runtime, order_id, to, actor=actor_of(staff), reason=reason or None
        ),
        lambda o: f"Order is now {o.status.replace('_', ' ')}",
    )
