"""The returns API: a customer's return requests under ``/api/orders/{id}/returns``, the staff
queue under ``/api/admin/returns`` (approve, reject, receive, refund). Receiving and refunding
start the return-and-refund workflow, so those endpoints take no request transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query

from mercato.identity.deps import CurrentUser, StaffUser, WorkflowStaff
from mercato.openapi import problems
from mercato.problems import not_found
from mercato.returns import service
from mercato.returns.schemas import (
    DecisionIn,
    ReceiveIn,
    ReturnIn,
    ReturnListOut,
    ReturnOut,
    StaffReturnListOut,
    StaffReturnOut,
)
from mercato.runtime import RuntimeDep, UowDep

router = APIRouter(tags=["returns"])

ADMIN = "/api/admin/returns"


# -- customers -------------------------------------------------------------------------------------


@router.post(
    "/api/orders/{order_id}/returns",
    response_model=ReturnOut,
    status_code=201,
    responses=problems(409),
)
async def request_return(
    order_id: str, body: ReturnIn, user: CurrentUser, uow: UowDep, runtime: RuntimeDep
) -> ReturnOut:
    """Ask to return units of delivered lines, with a reason, within the return window."""
    found = await service.request_return(
        uow,
        order_id,
        user_id=user.id,
        lines=[(line.order_line_id, line.quantity) for line in body.lines],
        reason=body.reason,
        window_days=runtime.settings.return_window_days,
    )
    return ReturnOut.of(found)


@router.post(
    "/api/guest-orders/{order_id}/returns",
    response_model=ReturnOut,
    status_code=201,
    responses=problems(409),
)
async def request_guest_return(
    order_id: str,
    body: ReturnIn,
    token: Annotated[str, Header(alias="X-Order-Token", max_length=200)],
    uow: UowDep,
    runtime: RuntimeDep,
) -> ReturnOut:
    """Ask to return units of an order opened by its access token (no account needed), like
    its customer could."""
    found = await service.request_return(
        uow,
        order_id,
        user_id=None,
        access_token=token,
        secret_key=runtime.settings.secret_key,
        lines=[(line.order_line_id, line.quantity) for line in body.lines],
        reason=body.reason,
        window_days=runtime.settings.return_window_days,
    )
    return ReturnOut.of(found)


@router.get("/api/guest-orders/{order_id}/returns", response_model=ReturnListOut)
async def guest_returns(
    order_id: str,
    token: Annotated[str, Header(alias="X-Order-Token", max_length=200)],
    uow: UowDep,
    runtime: RuntimeDep,
) -> ReturnListOut:
    """The return requests of an order opened by its access token."""
    found = await service.customer_returns(
        uow, order_id, None, access_token=token, secret_key=runtime.settings.secret_key
    )
    if found is None:
        raise not_found("Order", order_id)
    return ReturnListOut(items=[ReturnOut.of(r) for r in found])


@router.get("/api/orders/{order_id}/returns", response_model=ReturnListOut)
async def my_returns(order_id: str, user: CurrentUser, uow: UowDep) -> ReturnListOut:
    found = await service.customer_returns(uow, order_id, user.id)
    if found is None:
        raise not_found("Order", order_id)
    return ReturnListOut(items=[ReturnOut.of(r) for r in found])


# -- staff -----------------------------------------------------------------------------------------


@router.get(ADMIN, response_model=StaffReturnListOut)
async def list_returns(
    _staff: StaffUser,
    uow: UowDep,
    status: Annotated[
        str | None, Query(max_length=16, json_schema_extra={"enum": [*service.RETURN_STATUSES]})
    ] = None,
    order_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> StaffReturnListOut:
    """Return requests by status, oldest first."""
    found = await service.list_returns(uow, status=status, order_id=order_id, limit=limit)
    return StaffReturnListOut(items=[StaffReturnOut.staff(r) for r in found])


@router.get(ADMIN + "/{return_id}", response_model=StaffReturnOut)
async def get_return(return_id: str, _staff: StaffUser, uow: UowDep) -> StaffReturnOut:
    found = await service.get_return(uow, return_id)
    if found is None:
        raise not_found("Return", return_id)
    return StaffReturnOut.staff(found)


@router.post(
    ADMIN + "/{return_id}/receive", response_model=StaffReturnOut, responses=problems(409, 503)
)
async def receive(
    return_id: str, body: ReceiveIn, staff: WorkflowStaff, runtime: RuntimeDep
) -> StaffReturnOut:
    """The goods arrived: restock or write off each line, then refund. When the payment
    provider does not answer in time the return stays ``received`` with ``refund_pending``;
    calling this (or ``/refund``) again finishes it without refunding twice."""
    found = await service.receive_return(
        runtime,
        return_id,
        [
            service.Disposition(line.order_line_id, line.disposition, line.warehouse)
            for line in body.lines
        ],
        actor=f"staff:{staff.id}",
        refund_shipping_on_full_return=runtime.settings.refund_shipping_on_full_return,
    )
    return StaffReturnOut.staff(found)


@router.post(
    ADMIN + "/{return_id}/refund", response_model=StaffReturnOut, responses=problems(409, 503)
)
async def refund(return_id: str, staff: WorkflowStaff, runtime: RuntimeDep) -> StaffReturnOut:
    """Retry the refund of a received return (it is made once, whatever the retries)."""
    found = await service.refund_return(runtime, return_id, actor=f"staff:{staff.id}")
    return StaffReturnOut.staff(found)


# After /receive and /refund: a path that matches this one is never tried against those.
@router.post(
    ADMIN + "/{return_id}/{decision}", response_model=StaffReturnOut, responses=problems(409)
)
async def decide(
    return_id: str,
    decision: service.Decision,
    staff: StaffUser,
    uow: UowDep,
    body: DecisionIn | None = None,
) -> StaffReturnOut:
    """Approve (the customer may send the goods) or reject the request."""
    found = await service.decide_return(
        uow,
        return_id,
        decision,
        actor=f"staff:{staff.id}",
        note=body.note if body is not None else None,
    )
    return StaffReturnOut.staff(found)
