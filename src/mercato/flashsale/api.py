"""The flash-sale API: the waiting room under ``/api/flash-sales/{sale_id}/queue`` (signed-in
customers), the staff's sales under ``/api/admin/flash-sales``.

The waiting room's endpoints run the sale's admission pass in transactions of their own (see
``service.poll``), so they take no request transaction."""

from __future__ import annotations

from fastapi import APIRouter, Request

from mercato.db import utcnow
from mercato.flashsale import service
from mercato.flashsale.schemas import QueueStateOut, SaleIn, SaleOut, new_sale
from mercato.identity.deps import StaffUser, WorkflowUser
from mercato.openapi import problems
from mercato.ratelimit import client_ip
from mercato.runtime import RuntimeDep, UowDep

router = APIRouter(tags=["flash sales"])

SHOP = "/api/flash-sales"
ADMIN = "/api/admin/flash-sales"


@router.post(ADMIN, status_code=201, response_model=SaleOut, responses=problems(409))
async def create_sale(body: SaleIn, uow: UowDep, runtime: RuntimeDep, _: StaffUser) -> SaleOut:
    """Schedule a flash sale and set its allocation aside from regular stock (an inventory hold
    owned by the sale, until it ends). 409 ``insufficient_stock`` when the stock is not there
    (nothing set aside), ``variant_unavailable``; 422 naming the field (``unknown_variant``,
    ``currency_mismatch``, ``ends_at`` before ``starts_at`` or past)."""
    new = new_sale(body, runtime.settings.currency)
    sale = await service.schedule_sale(uow, new)
    counters = await service.sale_counters(uow, service.gate_for(runtime), sale.id)
    return SaleOut.of(counters, utcnow())


@router.get(ADMIN + "/{sale_id}", response_model=SaleOut)
async def get_sale(sale_id: str, uow: UowDep, runtime: RuntimeDep, _: StaffUser) -> SaleOut:
    """A sale with its live counters: buyers queued, admitted, who bought and whose place
    expired; units sold, held and remaining; and what the admission gate says."""
    counters = await service.sale_counters(uow, service.gate_for(runtime), sale_id)
    return SaleOut.of(counters, utcnow())


@router.post(ADMIN + "/{sale_id}/end", response_model=SaleOut)
async def end_sale(sale_id: str, uow: UowDep, runtime: RuntimeDep, _: StaffUser) -> SaleOut:
    """End the sale now: buyers still holding units lose them and every unsold unit goes back to
    regular stock. Ending an ended sale answers it as it is."""
    gate = service.gate_for(runtime)
    await service.end_sale(uow, gate, sale_id, reason="staff")
    return SaleOut.of(await service.sale_counters(uow, gate, sale_id), utcnow())


@router.post(SHOP + "/{sale_id}/queue", response_model=QueueStateOut, responses=problems(409, 429))
async def join_queue(
    sale_id: str, request: Request, runtime: RuntimeDep, user: WorkflowUser
) -> QueueStateOut:
    """Take a place in the sale's waiting room: one per customer, whatever the tab or device
    (joining again answers the same place). Before the start, places are drawn at random at
    the start; after it, first come first served. Keep polling ``queue/me``: a place lapses
    when its buyer stops. 409 ``sale_ended``; 429 ``rate_limited``."""
    keeper = service.keeper_for(runtime)
    state = await service.join(runtime.db, keeper, sale_id, user.id, ip=client_ip(request))
    return QueueStateOut.of(state)


@router.get(SHOP + "/{sale_id}/queue/me", response_model=QueueStateOut, responses=problems(429))
async def my_place(
    sale_id: str, request: Request, runtime: RuntimeDep, user: WorkflowUser
) -> QueueStateOut:
    """The caller's state in the waiting room: ``waiting`` (position, estimated wait),
    ``admitted`` (the admission token and its expiry), ``sold_out``, ``expired`` or
    ``purchased``. 404 ``not_in_queue`` without a place; 429 ``rate_limited``."""
    keeper = service.keeper_for(runtime)
    state = await service.poll(runtime.db, keeper, sale_id, user.id, ip=client_ip(request))
    return QueueStateOut.of(state)
