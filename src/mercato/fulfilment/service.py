"""The fulfilment module's public face: what other modules and the adapters call.

The rules live in files by family: allocation, picking and packing (:mod:`.allocation`), the
ship-and-capture workflow (:mod:`.shipping`), tracking and delivery (:mod:`.tracking`) and
reading (:mod:`.queries`), and a marketplace seller's parts of orders to ship
(:mod:`.sellers`). Everything takes the caller's unit of work first, except what runs
over several units of work (:func:`create_shipment` starts a workflow, :func:`advance_tracking`
asks the carriers between transactions): those take the runtime.
"""

from __future__ import annotations

from mercato.fulfilment.allocation import (
    FulfilmentStep,
    allocate_order,
    cancel_fulfilments,
    check_shippable,
    mark_fulfilment,
)
from mercato.fulfilment.carriers import Carrier, carriers, offers
from mercato.fulfilment.models import FULFILMENT_STATUSES
from mercato.fulfilment.queries import (
    FULFILMENTS,
    ITEMS,
    MAX_ACTOR,
    MAX_PAGE,
    SHIPMENT_ITEMS,
    SHIPMENTS,
    TRACKING,
    DeliveredUnits,
    FulfilmentInfo,
    FulfilmentItemInfo,
    OrderTracking,
    ShipmentInfo,
    ShipmentLine,
    TrackingEventInfo,
    captured_for_order,
    check_fulfilment_status,
    customer_tracking,
    delivered_units,
    fulfilments_for_order,
    get_fulfilment,
    get_shipment,
    list_fulfilments,
    order_shipments,
    received_product,
    shipment_view,
    shipments_for_order,
    unit_share,
    warehouse_of_line,
)
from mercato.fulfilment.sellers import (
    MAX_PARTS_PAGE,
    SellerOrderPage,
    SellerOrderPart,
    seller_order,
    seller_orders,
    ship_part,
)
from mercato.fulfilment.shipping import (
    SHIP_AND_CAPTURE,
    SHIPMENT_CREATED,
    ShipmentRequest,
    ShipmentState,
    capture_key,
    create_shipment,
    retry_capture,
)
from mercato.fulfilment.tracking import SHIPMENT_DELIVERED, advance_tracking, deliver_shipment

__all__ = [
    "FULFILMENTS",
    "FULFILMENT_STATUSES",
    "ITEMS",
    "MAX_ACTOR",
    "MAX_PAGE",
    "MAX_PARTS_PAGE",
    "SHIPMENTS",
    "SHIPMENT_CREATED",
    "SHIPMENT_DELIVERED",
    "SHIPMENT_ITEMS",
    "SHIP_AND_CAPTURE",
    "TRACKING",
    "Carrier",
    "DeliveredUnits",
    "FulfilmentInfo",
    "FulfilmentItemInfo",
    "FulfilmentStep",
    "OrderTracking",
    "SellerOrderPage",
    "SellerOrderPart",
    "ShipmentInfo",
    "ShipmentLine",
    "ShipmentRequest",
    "ShipmentState",
    "TrackingEventInfo",
    "advance_tracking",
    "allocate_order",
    "cancel_fulfilments",
    "capture_key",
    "captured_for_order",
    "carriers",
    "check_fulfilment_status",
    "check_shippable",
    "create_shipment",
    "customer_tracking",
    "deliver_shipment",
    "delivered_units",
    "fulfilments_for_order",
    "get_fulfilment",
    "get_shipment",
    "list_fulfilments",
    "mark_fulfilment",
    "offers",
    "order_shipments",
    "received_product",
    "retry_capture",
    "seller_order",
    "seller_orders",
    "ship_part",
    "shipment_view",
    "shipments_for_order",
    "unit_share",
    "warehouse_of_line",
]
