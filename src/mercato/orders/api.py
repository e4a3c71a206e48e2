"""The orders API: a customer's own orders under ``/api/orders``, the staff back office under
``/api/admin/orders``. Someone else's order answers 404, exactly like an unknown one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.ext.asyncio import AsyncSession

from mercato.identity.deps import CurrentUser, StaffUser
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
from mercato.payments.service import get_provider
from mercato.problems import not_found
from mercato.runtime import Runtime, RuntimeDep, SessionDep

router = APIRouter(tags=["orders"])

MINE = "/api/orders"
ADMIN = "/api/admin/orders"

Cursor = Annotated[str | None, Query(max_length=1000)]


async def _customer_view(session: AsyncSession, order: service.OrderInfo) -> OrderOut:
    payment = await service.payment_summary(session, order)
    return order_out(order, payment, await service.shipments_of(session, order))


async def _staff_view(session: AsyncSession, order: service.OrderInfo) -> StaffOrderOut:
    payment = await service.payment_summary(session, order)
    return staff_order_out(order, payment, await service.shipments_of(session, order))


async def _cancel(
    session: AsyncSession,
    runtime: Runtime,
    order_id: str,
    *,
    actor: str,
    user_id: str | None,
    reason: str | None,
) -> service.OrderInfo:
    # The cancellation runs its own short transactions and calls the payment provider between
    # them; the request's transaction (which only read who is asking) must not stay open
    # meanwhile, or it would hold SQLite's write lock against them.
    await session.commit()
    return await service.cancel_order(
        runtime.db,
        get_provider(runtime),
        order_id,
        actor=actor,
        user_id=user_id,
        reason=reason,
    )


# -- customers -------------------------------------------------------------------------------------


@router.get(MINE, response_model=OrderPageOut)
async def my_orders(
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 20,
) -> OrderPageOut:
    """The signed-in customer's orders, newest first, in keyset pages (``next_cursor``)."""
    page = await service.customer_orders(
        session, user.id, secret_key=runtime.settings.secret_key, cursor=cursor, limit=limit
    )
    return OrderPageOut.of(page)


@router.get(MINE + "/{order_id}", response_model=OrderOut)
async def my_order(order_id: str, user: CurrentUser, session: SessionDep) -> OrderOut:
    """One of the customer's orders: lines with the prices paid, totals, payment, shipments and
    the status timeline."""
    order = await service.get_customer_order(session, order_id, user.id)
    if order is None:
        raise not_found("Order", order_id)
    return await _customer_view(session, order)


@router.post(MINE + "/{order_id}/cancel", response_model=OrderOut)
async def cancel_my_order(
    order_id: str,
    user: CurrentUser,
    session: SessionDep,
    runtime: RuntimeDep,
    body: CancelIn | None = None,
) -> OrderOut:
    """Cancel an order that has not shipped: the payment is voided or refunded and the items go
    back in stock. 409 ``invalid_transition`` once it has shipped (or was cancelled already)."""
    reason = body.reason if body is not None else None
    order = await _cancel(
        session, runtime, order_id, actor=f"customer:{user.id}", user_id=user.id, reason=reason
    )
    async with runtime.db.session() as fresh:
        return await _customer_view(fresh, order)


# -- staff -----------------------------------------------------------------------------------------


@router.get(ADMIN, response_model=StaffOrderPageOut)
async def search_orders(
    _staff: StaffUser,
    session: SessionDep,
    runtime: RuntimeDep,
    status: Annotated[str | None, Query(max_length=24)] = None,
    email: Annotated[str | None, Query(max_length=254)] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> StaffOrderPageOut:
    """Every order, newest first, filtered by status, customer e-mail and creation time
    (``created_from`` inclusive, ``created_to`` exclusive; UTC when no offset is given)."""
    filters = service.OrderFilters(
        status=status, email=email, created_from=created_from, created_to=created_to
    )
    page = await service.search_orders(
        session, filters, secret_key=runtime.settings.secret_key, cursor=cursor, limit=limit
    )
    return StaffOrderPageOut.of(page)


@router.get(ADMIN + "/{order_id}", response_model=StaffOrderOut)
async def staff_order(order_id: str, _staff: StaffUser, session: SessionDep) -> StaffOrderOut:
    order = await service.get_order(session, order_id)
    if order is None:
        raise not_found("Order", order_id)
    return await _staff_view(session, order)


@router.post(ADMIN + "/{order_id}/cancel", response_model=StaffOrderOut)
async def staff_cancel(
    order_id: str,
    staff: StaffUser,
    session: SessionDep,
    runtime: RuntimeDep,
    body: CancelIn | None = None,
) -> StaffOrderOut:
    """Cancel any order that has not shipped (void or refund, restock), like a customer can."""
    reason = body.reason if body is not None else None
    order = await _cancel(
        session, runtime, order_id, actor=f"staff:{staff.id}", user_id=None, reason=reason
    )
    async with runtime.db.session() as fresh:
        return await _staff_view(fresh, order)


@router.post(ADMIN + "/{order_id}/transition", response_model=StaffOrderOut)
async def staff_transition(
    order_id: str,
    body: TransitionIn,
    staff: StaffUser,
    session: SessionDep,
    runtime: RuntimeDep,
) -> StaffOrderOut:
    """Move an order by hand (manual operations); the state machine still decides. Moving it to
    ``cancelled`` runs the whole cancellation (money back, stock back)."""
    actor = f"staff:{staff.id}"
    service.check_status(body.to, "to")
    if body.to == "cancelled":
        order = await _cancel(
            session, runtime, order_id, actor=actor, user_id=None, reason=body.reason
        )
        async with runtime.db.session() as fresh:
            return await _staff_view(fresh, order)
    order = await service.transition(
        await session.connection(), order_id, body.to, actor=actor, reason=body.reason
    )
    return await _staff_view(session, order)
