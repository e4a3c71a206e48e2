"""The orders API: a customer's own orders under ``/api/orders``, a guest's order under
``/api/guest-orders`` (opened by its access token, which the order's mails link to and
``GET /api/orders/lookup`` answers), the staff back office under ``/api/admin/orders``. Someone
else's order answers 404, exactly like an unknown one.

Cancelling and moving an order by hand start the cancellation workflow (or run a transition)
in transactions of their own, so those endpoints take no request transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request

from mercato.identity.deps import CurrentUser, StaffUser, WorkflowStaff, WorkflowUser
from mercato.identity.schemas import Email
from mercato.openapi import DateTime, problems
from mercato.orders import service
from mercato.orders.schemas import (
    CancelIn,
    GuestOrderOut,
    OrderOut,
    OrderPageOut,
    StaffOrderOut,
    StaffOrderPageOut,
    TransitionIn,
    guest_order_out,
    order_out,
    staff_order_out,
)
from mercato.problems import not_found
from mercato.ratelimit import client_ip
from mercato.runtime import Runtime, RuntimeDep, UowDep

router = APIRouter(tags=["orders"])

MINE = "/api/orders"
GUEST = "/api/guest-orders"
ADMIN = "/api/admin/orders"
ORDER_TOKEN_HEADER = "X-Order-Token"  # noqa: S105  (a header name)

Cursor = Annotated[str | None, Query(max_length=1000)]
AccessToken = Annotated[
    str,
    Header(
        alias=ORDER_TOKEN_HEADER,
        max_length=200,
        description="The order's access token (from its mails, or from a lookup)",
    ),
]


async def _detail(
    runtime: Runtime, order_id: str, *, user_id: str | None = None
) -> service.OrderDetail:
    """The order's page after a change made in transactions of its own."""
    async with runtime.db.transaction() as uow:
        detail = await service.order_detail(uow, order_id, user_id=user_id)
    if detail is None:
        raise not_found("Order", order_id)
    return detail


# -- guests (declared before /api/orders/{order_id}, which would take "lookup" for an id) ---------


@router.get(MINE + "/lookup", response_model=GuestOrderOut, responses=problems(404, 429))
async def lookup_order(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    order_number: Annotated[str, Query(min_length=1, max_length=100)],
    email: Annotated[Email, Query()],
) -> GuestOrderOut:
    """An order by its number and the e-mail it was placed with, without an account, and the
    access token that opens it under ``/api/guest-orders``. 404 ``order_not_found`` for an
    unknown number and a wrong e-mail alike; lookups are counted per client IP (429
    ``rate_limited`` with ``Retry-After``)."""
    found = await service.lookup_order(
        uow,
        order_number,
        email,
        secret_key=runtime.settings.secret_key,
        throttle_by=service.LookupThrottle.for_caller(runtime, client_ip(request)),
    )
    detail = await service.order_detail_for(
        uow,
        found.order.id,
        service.OrderCaller(access_token=found.access_token),
        secret_key=runtime.settings.secret_key,
    )
    if detail is None:
        raise service.no_such_order()
    return guest_order_out(detail, found.access_token)


@router.get(GUEST + "/{order_id}", response_model=OrderOut)
async def guest_order(
    order_id: str, token: AccessToken, uow: UowDep, runtime: RuntimeDep
) -> OrderOut:
    """An order opened by its access token (no account needed)."""
    caller = service.OrderCaller(access_token=token)
    secret = runtime.settings.secret_key
    detail = await service.order_detail_for(uow, order_id, caller, secret_key=secret)
    if detail is None:
        raise not_found("Order", order_id)
    return order_out(detail)


@router.post(GUEST + "/{order_id}/cancel", response_model=OrderOut, responses=problems(409))
async def cancel_guest_order(
    order_id: str, token: AccessToken, runtime: RuntimeDep, body: CancelIn | None = None
) -> OrderOut:
    """Cancel an order opened by its access token, as its customer could (void or refund,
    restock). 409 ``invalid_transition`` once it has shipped (or was cancelled already)."""
    caller = service.OrderCaller(access_token=token)
    reason = body.reason if body is not None else None
    await service.cancel_order_for(runtime, order_id, caller, reason=reason)
    async with runtime.db.transaction() as uow:
        secret = runtime.settings.secret_key
        detail = await service.order_detail_for(uow, order_id, caller, secret_key=secret)
    if detail is None:
        raise not_found("Order", order_id)
    return order_out(detail)


# -- customers -------------------------------------------------------------------------------------


@router.get(MINE, response_model=OrderPageOut, responses=problems(400))
async def my_orders(
    user: CurrentUser,
    uow: UowDep,
    runtime: RuntimeDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
) -> OrderPageOut:
    """The signed-in customer's orders, newest first, in keyset pages (``next_cursor``)."""
    page = await service.customer_orders(
        uow, user.id, secret_key=runtime.settings.secret_key, cursor=cursor, limit=limit
    )
    return OrderPageOut.of(page)


@router.get(MINE + "/{order_id}", response_model=OrderOut)
async def my_order(order_id: str, user: CurrentUser, uow: UowDep) -> OrderOut:
    """One of the customer's orders: lines with the prices paid, totals, payment, shipments and
    the status timeline."""
    detail = await service.order_detail(uow, order_id, user_id=user.id)
    if detail is None:
        raise not_found("Order", order_id)
    return order_out(detail)


@router.post(MINE + "/{order_id}/cancel", response_model=OrderOut, responses=problems(409))
async def cancel_my_order(
    order_id: str, user: WorkflowUser, runtime: RuntimeDep, body: CancelIn | None = None
) -> OrderOut:
    """Cancel an order that has not shipped: the payment is voided or refunded and the items go
    back in stock. 409 ``invalid_transition`` once it has shipped (or was cancelled already)."""
    await service.cancel_order(
        runtime,
        order_id,
        actor=f"customer:{user.id}",
        user_id=user.id,
        reason=body.reason if body is not None else None,
    )
    return order_out(await _detail(runtime, order_id, user_id=user.id))


# -- staff -----------------------------------------------------------------------------------------


@router.get(ADMIN, response_model=StaffOrderPageOut, responses=problems(400))
async def search_orders(
    _staff: StaffUser,
    uow: UowDep,
    runtime: RuntimeDep,
    status: Annotated[
        str | None, Query(max_length=24, json_schema_extra={"enum": [*service.STATUSES]})
    ] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    created_from: DateTime | None = None,
    created_to: DateTime | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> StaffOrderPageOut:
    """Every order, newest first, filtered by status, customer e-mail and creation time
    (``created_from`` inclusive, ``created_to`` exclusive; UTC when no offset is given)."""
    filters = service.OrderFilters(
        status=status, email=email, created_from=created_from, created_to=created_to
    )
    page = await service.search_orders(
        uow, filters, secret_key=runtime.settings.secret_key, cursor=cursor, limit=limit
    )
    return StaffOrderPageOut.of(page)


@router.get(ADMIN + "/{order_id}", response_model=StaffOrderOut)
async def staff_order(order_id: str, _staff: StaffUser, uow: UowDep) -> StaffOrderOut:
    detail = await service.order_detail(uow, order_id)
    if detail is None:
        raise not_found("Order", order_id)
    return staff_order_out(detail)


@router.post(ADMIN + "/{order_id}/cancel", response_model=StaffOrderOut, responses=problems(409))
async def staff_cancel(
    order_id: str, staff: WorkflowStaff, runtime: RuntimeDep, body: CancelIn | None = None
) -> StaffOrderOut:
    """Cancel any order that has not shipped (void or refund, restock), like a customer can."""
    await service.cancel_order(
        runtime,
        order_id,
        actor=f"staff:{staff.id}",
        reason=body.reason if body is not None else None,
    )
    return staff_order_out(await _detail(runtime, order_id))


@router.post(
    ADMIN + "/{order_id}/transition", response_model=StaffOrderOut, responses=problems(409)
)
async def staff_transition(
    order_id: str, body: TransitionIn, staff: WorkflowStaff, runtime: RuntimeDep
) -> StaffOrderOut:
    """Move an order by hand (manual operations); the state machine still decides. Moving it to
    ``cancelled`` runs the whole cancellation (money back, stock back)."""
    await service.change_status(
        runtime, order_id, body.to, actor=f"staff:{staff.id}", reason=body.reason
    )
    return staff_order_out(await _detail(runtime, order_id))
