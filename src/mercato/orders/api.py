"""The orders API: a customer's own orders under ``/api/orders``, the staff back office under
``/api/admin/orders``. Someone else's order answers 404, exactly like an unknown one.

Cancelling and moving an order by hand start the cancellation workflow (or run a transition)
in transactions of their own, so those endpoints take no request transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mercato.identity.deps import CurrentUser, StaffUser, WorkflowStaff, WorkflowUser
from mercato.openapi import DateTime, problems
from mercato.orders import service
from mercato.orders.schemas import (
    CancelIn,
    OrderOut,
    OrderPageOut,
    StaffOrderOut,
    StaffOrderPageOut,
    TransitionIn,
    order_out,
    staff_order_out,
)
from mercato.problems import not_found
from mercato.runtime import Runtime, RuntimeDep, UowDep

router = APIRouter(tags=["orders"])

MINE = "/api/orders"
ADMIN = "/api/admin/orders"

Cursor = Annotated[str | None, Query(max_length=1000)]


async def _detail(
    runtime: Runtime, order_id: str, *, user_id: str | None = None
) -> service.OrderDetail:
    """The order's page after a change made in transactions of its own."""
    async with runtime.db.transaction() as uow:
        detail = await service.order_detail(uow, order_id, user_id=user_id)
    if detail is None:
        raise not_found("Order", order_id)
    return detail


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
