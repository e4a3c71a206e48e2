"""The fulfilment API: the warehouse back office under ``/api/admin`` (fulfilments to pick and
pack, shipments, delivery), the customer's tracking page of an order, and a marketplace
seller's parts of orders under ``/api/seller/orders`` (list them, ship one; another seller's
part is a 404, staff see and ship every part).

Making a shipment starts the ship-and-capture workflow, which runs its steps in transactions
of its own (and calls the payment processor between them): that endpoint takes no request
transaction."""

from __future__ import annotations

from datetime import UTC
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from mercato.fulfilment import carriers, service
from mercato.fulfilment.schemas import (
    CarrierOut,
    DeliverIn,
    FulfilmentListOut,
    FulfilmentOut,
    RateQuoteOut,
    SellerOrderOut,
    SellerOrderPageOut,
    SellerShipmentIn,
    ShipmentIn,
    ShipmentLineIn,
    ShipmentOut,
    StaffShipmentListOut,
    StaffShipmentOut,
    TrackingOut,
)
from mercato.identity.deps import (
    CurrentUser,
    StaffUser,
    WorkflowSellerOrStaff,
    WorkflowStaff,
    require_role,
)
from mercato.identity.service import UserInfo
from mercato.money import format_minor
from mercato.openapi import problems
from mercato.problems import not_found
from mercato.runtime import RuntimeDep, UowDep

router = APIRouter(tags=["fulfilment"])

ADMIN = "/api/admin"
SELLER_ORDERS = "/api/seller/orders"
SellerOrStaff = Annotated[UserInfo, Depends(require_role("seller", "staff"))]


# -- customers -------------------------------------------------------------------------------------


def _picked(lines: list[ShipmentLineIn] | None) -> tuple[tuple[str, int], ...] | None:
    """A shipment body's lines as (order line, quantity); ``None``: every unit left."""
    return None if lines is None else tuple((ln.order_line_id, ln.quantity) for ln in lines)


@router.get("/api/orders/{order_id}/tracking", response_model=TrackingOut)
async def track_my_order(order_id: str, user: CurrentUser, uow: UowDep) -> TrackingOut:
    """Each shipment of the customer's order with its carrier, tracking number and events."""
    found = await service.customer_tracking(uow, order_id, user.id)
    if found is None:
        raise not_found("Order", order_id)
    return TrackingOut(
        order_id=found.order.id,
        status=found.order.status,
        shipments=[ShipmentOut.of(s) for s in found.shipments],
    )


# -- marketplace sellers: their parts of orders ---------------------------------------------------


@router.get(SELLER_ORDERS, response_model=SellerOrderPageOut, responses=problems(403))
async def seller_orders(
    user: SellerOrStaff,
    uow: UowDep,
    seller_id: Annotated[str | None, Query(max_length=40, description="Staff only")] = None,
    before: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PARTS_PAGE)] = 20,
) -> SellerOrderPageOut:
    """The signed-in seller's parts of orders, newest first, each with its lines (shipped and
    left), the address to ship to and its shipments; staff see every seller's (or
    ``seller_id``'s). Pages: pass ``next_before`` as ``before``."""
    page = await service.seller_orders(uow, user, seller_id=seller_id, before=before, limit=limit)
    return SellerOrderPageOut.of(page)


@router.get(
    SELLER_ORDERS + "/{order_part_id}", response_model=SellerOrderOut, responses=problems(403)
)
async def seller_order(order_part_id: str, user: SellerOrStaff, uow: UowDep) -> SellerOrderOut:
    """One of the seller's parts of an order (another seller's: 404)."""
    return SellerOrderOut.of(await service.seller_order(uow, user, order_part_id))


@router.post(
    SELLER_ORDERS + "/{order_part_id}/shipments",
    response_model=StaffShipmentOut,
    status_code=201,
    responses=problems(402, 409, 503),
)
async def ship_part(
    order_part_id: str, body: SellerShipmentIn, user: WorkflowSellerOrStaff, runtime: RuntimeDep
) -> StaffShipmentOut:
    """Ship units of the seller's part (``lines`` left out: all its units not shipped yet),
    capturing their share of the payment first (the part's last parcel also captures the
    part's shipping). A refused capture ships nothing (402 ``capture_failed``)."""
    request = service.ShipmentRequest(
        carrier=body.carrier,
        service=body.service,
        tracking_number=body.tracking_number,
        lines=_picked(body.lines),
        shipment_id=body.shipment_id,
    )
    shipment = await service.ship_part(runtime, order_part_id, request, user=user)
    return StaffShipmentOut.staff(shipment)


# -- staff: fulfilments ----------------------------------------------------------------------------


@router.get(ADMIN + "/fulfilments", response_model=FulfilmentListOut)
async def list_fulfilments(
    _staff: StaffUser,
    uow: UowDep,
    warehouse: Annotated[str | None, Query(max_length=16)] = None,
    status: Annotated[
        str | None, Query(max_length=24, json_schema_extra={"enum": [*service.FULFILMENT_STATUSES]})
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
) -> FulfilmentListOut:
    """Fulfilments by warehouse and status, oldest first: the pick list."""
    found = await service.list_fulfilments(uow, warehouse=warehouse, status=status, limit=limit)
    return FulfilmentListOut(items=[FulfilmentOut.of(f) for f in found])


@router.get(ADMIN + "/fulfilments/{fulfilment_id}", response_model=FulfilmentOut)
async def get_fulfilment(fulfilment_id: str, _staff: StaffUser, uow: UowDep) -> FulfilmentOut:
    found = await service.get_fulfilment(uow, fulfilment_id)
    if found is None:
        raise not_found("Fulfilment", fulfilment_id)
    return FulfilmentOut.of(found)


_STEPS: dict[str, service.FulfilmentStep] = {"pick": "picked", "pack": "packed"}


@router.post(
    ADMIN + "/fulfilments/{fulfilment_id}/{step}",
    response_model=FulfilmentOut,
    responses=problems(409),
)
async def pick_or_pack(
    fulfilment_id: str, step: Literal["pick", "pack"], staff: StaffUser, uow: UowDep
) -> FulfilmentOut:
    """Mark the fulfilment picked, or packed (a paid order becomes ``fulfilling``)."""
    found = await service.mark_fulfilment(
        uow, fulfilment_id, _STEPS[step], actor=f"staff:{staff.id}"
    )
    return FulfilmentOut.of(found)


@router.get(ADMIN + "/orders/{order_id}/fulfilments", response_model=FulfilmentListOut)
async def order_fulfilments(order_id: str, _staff: StaffUser, uow: UowDep) -> FulfilmentListOut:
    found = await service.fulfilments_for_order(uow, order_id)
    return FulfilmentListOut(items=[FulfilmentOut.of(f) for f in found])


@router.post(
    ADMIN + "/orders/{order_id}/allocate", response_model=FulfilmentListOut, responses=problems(409)
)
async def allocate(order_id: str, _staff: StaffUser, uow: UowDep) -> FulfilmentListOut:
    """Allocate the order to warehouses now (normally done as soon as it is placed)."""
    found = await service.allocate_order(uow, order_id)
    return FulfilmentListOut(items=[FulfilmentOut.of(f) for f in found])


# -- staff: shipments ------------------------------------------------------------------------------


@router.post(
    ADMIN + "/orders/{order_id}/shipments",
    response_model=StaffShipmentOut,
    status_code=201,
    responses=problems(402, 409, 503),
)
async def create_shipment(
    order_id: str, body: ShipmentIn, staff: WorkflowStaff, runtime: RuntimeDep
) -> StaffShipmentOut:
    """Ship units of the order (``lines`` left out: all unshipped units). Their share of the
    payment is captured first: when the capture fails nothing ships (402 ``capture_failed``).
    The order becomes ``shipped`` once every unit has left."""
    request = service.ShipmentRequest(
        carrier=body.carrier,
        service=body.service,
        tracking_number=body.tracking_number,
        lines=_picked(body.lines),
        fulfilment_id=body.fulfilment_id,
        shipment_id=body.shipment_id,
    )
    shipment = await service.create_shipment(runtime, order_id, request, actor=f"staff:{staff.id}")
    return StaffShipmentOut.staff(shipment)


@router.get(ADMIN + "/orders/{order_id}/shipments", response_model=StaffShipmentListOut)
async def order_shipments(order_id: str, _staff: StaffUser, uow: UowDep) -> StaffShipmentListOut:
    found = await service.shipments_for_order(uow, order_id, include_pending=True)
    return StaffShipmentListOut(items=[StaffShipmentOut.staff(s) for s in found])


@router.get(ADMIN + "/shipments/{shipment_id}", response_model=StaffShipmentOut)
async def get_shipment(shipment_id: str, _staff: StaffUser, uow: UowDep) -> StaffShipmentOut:
    found = await service.get_shipment(uow, shipment_id)
    if found is None:
        raise not_found("Shipment", shipment_id)
    return StaffShipmentOut.staff(found)


@router.post(
    ADMIN + "/shipments/{shipment_id}/deliver",
    response_model=StaffShipmentOut,
    responses=problems(409),
)
async def deliver(
    shipment_id: str, staff: StaffUser, uow: UowDep, body: DeliverIn | None = None
) -> StaffShipmentOut:
    """The parcel arrived; the order is ``delivered`` once all its parcels have."""
    when = body.delivered_at if body is not None else None
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    shipment = await service.deliver_shipment(
        uow, shipment_id, actor=f"staff:{staff.id}", delivered_at=when
    )
    return StaffShipmentOut.staff(shipment)


@router.get(ADMIN + "/carriers", response_model=list[CarrierOut])
async def list_carriers(
    _staff: StaffUser,
    runtime: RuntimeDep,
    country: Annotated[str, Query(min_length=2, max_length=2)] = "DE",
    units: Annotated[int, Query(ge=1, le=1000)] = 1,
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
) -> list[CarrierOut]:
    """The carriers a shipment can use, with their rate quotes for a parcel (in ``currency``,
    by default the shop's)."""
    currency = currency or runtime.settings.currency
    return [
        CarrierOut(
            name=carrier.name,
            services=list(carrier.services),
            requires_tracking_number=carrier.requires_tracking_number,
            rates=[
                RateQuoteOut(
                    service=r.service,
                    amount=format_minor(r.amount, r.currency),
                    currency=r.currency,
                    min_days=r.min_days,
                    max_days=r.max_days,
                )
                for r in rates
            ],
        )
        for carrier, rates in carriers.offers(country=country, units=units, currency=currency)
    ]
