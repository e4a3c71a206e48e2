"""Back office: orders. ``/admin/orders`` searches them (status, customer e-mail, placing day;
newest first, in keyset pages); ``/admin/orders/{id}`` shows one with its lines, totals,
payment, fulfilments, shipments, returns and history, and the forms that move it: allocate,
pick, pack, ship, deliver, retry a capture, cancel, refund received returns, and a manual
status change. Each form calls the service the staff API calls; a refusal (an invalid
transition, a declined capture) comes back as a message on the order's page."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato.fulfilment import carriers
from mercato.fulfilment import service as fulfilment
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.service import get_provider
from mercato.problems import Problem, not_found
from mercato.returns import service as returns
from mercato.runtime import Runtime, RuntimeDep, SessionDep
from mercato.web.admin.ops_common import (
    actor_of,
    day_start,
    parse_day,
    problem_message,
    run_action,
    with_query,
)
from mercato.web.deps import PageStaff
from mercato.web.security import CsrfChecked
from mercato.web.templating import field_errors, flash, redirect, render

router = APIRouter()

PAGE_SIZE = 25
SHIP_FIELDS = ("carrier", "service", "tracking_number", "fulfilment_id")

Text = Annotated[str, Form(max_length=500)]


def _order_url(order_id: str) -> str:
    return f"/admin/orders/{order_id}"


# -- the list --------------------------------------------------------------------------------------


@router.get("/orders", response_class=HTMLResponse)
async def order_list(
    request: Request,
    staff: PageStaff,
    session: SessionDep,
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
                session,
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
    session: AsyncSession,
    order_id: str,
    *,
    ship_form: dict[str, str] | None = None,
    ship_errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    order = await orders.get_order(session, order_id)
    if order is None:
        raise not_found("Order", order_id)
    payment = await orders.payment_summary(session, order)
    payment_events = (
        await payments.intent_events(session, order.payment_intent_id)
        if order.payment_intent_id
        else []
    )
    fulfilments = await fulfilment.fulfilments_for_order(session, order_id)
    shipments = await fulfilment.shipments_for_order(session, order_id, include_pending=True)
    order_returns = await returns.returns_for_order(session, order_id)
    unshipped = sum(line.quantity - line.quantity_shipped for line in order.lines)
    open_fulfilments = [f for f in fulfilments if f.status != "cancelled"]
    carrier_list = [(name, carriers.get_carrier(name)) for name in carriers.carrier_names()]
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
            "unshipped": unshipped,
            "can_allocate": not fulfilments and order.status in orders.SHIPPABLE,
            "can_ship": unshipped > 0 and order.status in orders.SHIPPABLE,
            "to_refund": [r for r in order_returns if r.refund_pending],
            "manual_statuses": order.next_statuses,
            "carriers": carrier_list,
            "services": sorted({s for _, c in carrier_list for s in c.services}),
            "fulfilment_choices": [("", "Every unshipped unit")]
            + [(f.id, f"From {f.warehouse_code} ({f.status})") for f in open_fulfilments],
            "ship_form": ship_form or {"carrier": "sandbox", "service": "standard"},
            "ship_errors": ship_errors or {},
        },
        status_code=status_code,
    )


@router.get("/orders/{order_id}", response_class=HTMLResponse)
async def order_detail(
    order_id: str, request: Request, staff: PageStaff, session: SessionDep
) -> HTMLResponse:
    return await _detail(request, session, order_id)


# -- actions ---------------------------------------------------------------------------------------
#
# Each action first ends the page's own transaction (which only read who is asking), then runs
# the service in its own transaction(s), exactly like the staff API: a service that calls the
# payment provider must not run inside a transaction holding locks.


async def _in_transaction(runtime: Runtime, work: Any) -> Any:
    return await inventory.in_transaction(runtime.db, work)


@router.post("/orders/{order_id}/allocate", dependencies=[CsrfChecked])
async def allocate(
    order_id: str, request: Request, staff: PageStaff, session: SessionDep, runtime: RuntimeDep
) -> Response:
    await session.commit()

    async def work(conn: AsyncConnection) -> list[fulfilment.FulfilmentInfo]:
        return await fulfilment.allocate_order(conn, order_id)

    return await run_action(
        request,
        _order_url(order_id),
        lambda: _in_transaction(runtime, work),
        lambda found: "Allocated to " + ", ".join(f.warehouse_code for f in found),
    )


async def _move_fulfilment(
    request: Request,
    runtime: Runtime,
    order_id: str,
    fulfilment_id: str,
    staff: Any,
    to: str,
) -> Response:
    mark = fulfilment.mark_picked if to == "picked" else fulfilment.mark_packed

    async def work(conn: AsyncConnection) -> fulfilment.FulfilmentInfo:
        found = await fulfilment.get_fulfilment(conn, fulfilment_id)
        if found is None or found.order_id != order_id:
            raise not_found("Fulfilment", fulfilment_id)
        return await mark(conn, fulfilment_id, actor=actor_of(staff))

    return await run_action(
        request,
        _order_url(order_id),
        lambda: _in_transaction(runtime, work),
        lambda found: f"Fulfilment from {found.warehouse_code} marked {to}",
    )


@router.post("/orders/{order_id}/fulfilments/{fulfilment_id}/pick", dependencies=[CsrfChecked])
async def pick(
    order_id: str,
    fulfilment_id: str,
    request: Request,
    staff: PageStaff,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    await session.commit()
    return await _move_fulfilment(request, runtime, order_id, fulfilment_id, staff, "picked")


@router.post("/orders/{order_id}/fulfilments/{fulfilment_id}/pack", dependencies=[CsrfChecked])
async def pack(
    order_id: str,
    fulfilment_id: str,
    request: Request,
    staff: PageStaff,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    await session.commit()
    return await _move_fulfilment(request, runtime, order_id, fulfilment_id, staff, "packed")


@router.post("/orders/{order_id}/ship", dependencies=[CsrfChecked])
async def ship(
    order_id: str,
    request: Request,
    staff: PageStaff,
    session: SessionDep,
    runtime: RuntimeDep,
    carrier: Annotated[str, Form(max_length=40)] = "",
    service: Annotated[str, Form(max_length=40)] = "",
    tracking_number: Annotated[str, Form(max_length=200)] = "",
    fulfilment_id: Annotated[str, Form(max_length=40)] = "",
) -> Response:
    """Ship every unshipped unit (of one fulfilment, when chosen). The payment share is
    captured first; a refused capture ships nothing and says so on the page."""
    form = {
        "carrier": carrier,
        "service": service,
        "tracking_number": tracking_number,
        "fulfilment_id": fulfilment_id,
    }
    await session.commit()
    request_ = fulfilment.ShipmentRequest(
        carrier=carrier.strip(),
        service=service.strip() or None,
        tracking_number=tracking_number.strip() or None,
        fulfilment_id=fulfilment_id or None,
    )
    try:
        shipment = await fulfilment.create_shipment(
            runtime.db, get_provider(runtime), order_id, request_, actor=actor_of(staff)
        )
    except Problem as exc:
        errors = {k: v for k, v in field_errors(exc).items() if k in SHIP_FIELDS}
        if errors:
            # The request's own session has ended (above): read the page in a fresh one.
            async with runtime.db.session() as fresh:
                return await _detail(
                    request, fresh, order_id, ship_form=form, ship_errors=errors, status_code=422
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
    order_id: str,
    shipment_id: str,
    request: Request,
    staff: PageStaff,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    await session.commit()

    async def work(conn: AsyncConnection) -> fulfilment.ShipmentInfo:
        found = await fulfilment.get_shipment(conn, shipment_id)
        if found is None or found.order_id != order_id:
            raise not_found("Shipment", shipment_id)
        return await fulfilment.deliver_shipment(conn, shipment_id, actor=actor_of(staff))

    return await run_action(
        request,
        _order_url(order_id),
        lambda: _in_transaction(runtime, work),
        lambda s: f"Shipment {s.tracking_number} marked delivered",
    )


@router.post("/orders/{order_id}/shipments/{shipment_id}/capture", dependencies=[CsrfChecked])
async def retry_capture(
    order_id: str,
    shipment_id: str,
    request: Request,
    staff: PageStaff,
    session: SessionDep,
    runtime: RuntimeDep,
) -> Response:
    """A shipment whose capture the provider had not confirmed: ask again with the same
    shipment id (the same idempotency key: never captured twice), as the staff API does."""
    found = await fulfilment.get_shipment(session, shipment_id)
    if found is None or found.order_id != order_id:
        raise not_found("Shipment", shipment_id)
    await session.commit()
    again = fulfilment.ShipmentRequest(
        carrier=found.carrier,
        service=found.service,
        tracking_number=found.tracking_number,
        shipment_id=found.id,
    )
    return await run_action(
        request,
        _order_url(order_id),
        lambda: fulfilment.create_shipment(
            runtime.db, get_provider(runtime), order_id, again, actor=actor_of(staff)
        ),
        lambda s: f"Payment captured; shipment {s.tracking_number} is {s.status.replace('_', ' ')}",
    )


@router.post("/orders/{order_id}/cancel", dependencies=[CsrfChecked])
async def cancel(
    order_id: str,
    request: Request,
    staff: PageStaff,
    session: SessionDep,
    runtime: RuntimeDep,
    reason: Text = "",
) -> Response:
    """Cancel an order that has not shipped: the payment is voided (or refunded) and the goods
    go back in stock."""
    await session.commit()

    async def act() -> orders.OrderInfo:
        return await orders.cancel_order(
            runtime.db,
            get_provider(runtime),
            order_id,
            actor=actor_of(staff),
            user_id=None,
            reason=reason or None,
        )

    def done(order: orders.OrderInfo) -> str:
        if order.payment_released_at is None:
            return "Order cancelled; the payment is not released yet and will be retried"
        return "Order cancelled; the payment was released and the items are back in stock"

    return await run_action(request, _order_url(order_id), act, done)


@router.post("/orders/{order_id}/release-payment", dependencies=[CsrfChecked])
async def release_payment(
    order_id: str, request: Request, staff: PageStaff, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Finish giving a cancelled order's money back (what the worker retries by itself)."""
    await session.commit()

    async def act() -> bool:
        if not await orders.release_payment(runtime.db, get_provider(runtime), order_id):
            raise Problem(
                409,
                "payment_not_released",
                "The payment provider has not released the payment yet; it will be retried",
            )
        return True

    return await run_action(request, _order_url(order_id), act, "The payment was released")


@router.post("/orders/{order_id}/refund", dependencies=[CsrfChecked])
async def refund(
    order_id: str, request: Request, staff: PageStaff, session: SessionDep, runtime: RuntimeDep
) -> Response:
    """Refund the order's received returns whose refund has not gone through."""
    waiting = [r for r in await returns.returns_for_order(session, order_id) if r.refund_pending]
    await session.commit()

    async def act() -> int:
        if not waiting:
            raise Problem(409, "nothing_to_refund", "No received return is waiting for a refund")
        done = 0
        for found in waiting:
            after = await returns.refund_return(
                runtime.db, get_provider(runtime), found.id, actor=actor_of(staff)
            )
            done += after.status == "refunded"
        if done < len(waiting):
            raise Problem(
                503,
                "refund_pending",
                "The payment provider has not confirmed every refund yet; try again shortly",
            )
        return done

    return await run_action(request, _order_url(order_id), act, lambda n: f"Refunded {n} return(s)")


@router.post("/orders/{order_id}/transition", dependencies=[CsrfChecked])
async def manual_transition(
    order_id: str,
    request: Request,
    staff: PageStaff,
    session: SessionDep,
    runtime: RuntimeDep,
    to: Annotated[str, Form(max_length=24)] = "",
    reason: Text = "",
) -> Response:
    """Move the order by hand (manual operations); the state machine still decides, and
    ``cancelled`` runs the whole cancellation, as in the staff API."""
    await session.commit()
    actor = actor_of(staff)

    async def act() -> orders.OrderInfo:
        orders.check_status(to, "to")
        if to == "cancelled":
            return await orders.cancel_order(
                runtime.db,
                get_provider(runtime),
                order_id,
                actor=actor,
                user_id=None,
                reason=reason or None,
            )

        async def work(conn: AsyncConnection) -> orders.OrderInfo:
            return await orders.transition(conn, order_id, to, actor=actor, reason=reason or None)

        result: orders.OrderInfo = await _in_transaction(runtime, work)
        return result

    return await run_action(
        request,
        _order_url(order_id),
        act,
        lambda o: f"Order is now {o.status.replace('_', ' ')}",
    )
