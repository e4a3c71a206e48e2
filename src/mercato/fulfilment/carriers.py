"""The carrier port and the two built-in carriers.

A :class:`Carrier` quotes rates, creates a label (a tracking number and a label document) and
reports tracking updates. ``manual``: staff bought the label elsewhere and types its tracking
number. ``sandbox``: a pretend carrier for demos and tests; it makes up tracking numbers
(``SBX`` + 12 digits, derived from the shipment id so a retry gets the same one) and moves each
parcel along a fixed timeline measured from the moment it shipped, so the same ``now`` always
gives the same events.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from mercato.problems import validation_problem

MAX_TRACKING_NUMBER = 80
_TRACKING_SHAPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._/-]*$")

# Tracking statuses, in journey order.
LABEL_CREATED = "label_created"
PICKED_UP = "picked_up"
IN_TRANSIT = "in_transit"
OUT_FOR_DELIVERY = "out_for_delivery"
DELIVERED = "delivered"
JOURNEY: tuple[str, ...] = (LABEL_CREATED, PICKED_UP, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED)


@dataclass(frozen=True, slots=True)
class RateQuote:
    carrier: str
    service: str
    amount: int
    currency: str
    min_days: int
    max_days: int


@dataclass(frozen=True, slots=True)
class Label:
    tracking_number: str
    tracking_url: str | None
    document: str | None  # the printable label (text), or None when staff has it already


@dataclass(frozen=True, slots=True)
class TrackingUpdate:
    status: str
    description: str
    location: str | None
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class Parcel:
    """What a carrier needs to know to make a label."""

    shipment_id: str
    order_id: str
    warehouse_code: str | None
    address: Mapping[str, Any]
    units: int


class Carrier(Protocol):
    name: str
    services: tuple[str, ...]
    requires_tracking_number: bool

    def quote(self, *, country: str, units: int, currency: str) -> list[RateQuote]:
        """What each of the carrier's services would cost for this parcel."""
        ...

    async def create_label(
        self, parcel: Parcel, *, service: str | None, tracking_number: str | None
    ) -> Label:
        """The label for the parcel (the tracking number is given for ``manual``)."""
        ...

    async def tracking(
        self, *, tracking_number: str, shipped_at: datetime, now: datetime
    ) -> list[TrackingUpdate]:
        """Every tracking update known at ``now`` (oldest first)."""
        ...


def check_tracking_number(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_TRACKING_NUMBER or not _TRACKING_SHAPE.match(value):
        raise validation_problem(
            "tracking_number",
            f"1 to {MAX_TRACKING_NUMBER} letters, digits, spaces, '.', '_', '/' or '-'",
        )
    return value


def _check_service(carrier: Carrier, service: str | None) -> str:
    if service is None:
        return carrier.services[0]
    if service not in carrier.services:
        raise validation_problem(
            "service",
            f"the {carrier.name} carrier offers {', '.join(carrier.services)}",
            code="unknown_service",
        )
    return service


class ManualCarrier:
    """Labels bought elsewhere: staff types the tracking number; tracking is marked by hand."""

    name = "manual"
    services: tuple[str, ...] = ("standard", "express")
    requires_tracking_number = True

    def quote(self, *, country: str, units: int, currency: str) -> list[RateQuote]:
        return []

    async def create_label(
        self, parcel: Parcel, *, service: str | None, tracking_number: str | None
    ) -> Label:
        number = check_tracking_number(tracking_number)
        if number is None:
            raise validation_problem(
                "tracking_number",
                "is required for the manual carrier",
                code="tracking_number_required",
            )
        return Label(tracking_number=number, tracking_url=None, document=None)

    async def tracking(
        self, *, tracking_number: str, shipped_at: datetime, now: datetime
    ) -> list[TrackingUpdate]:
        return []


# When each sandbox step happens, measured from the moment the parcel shipped.
SANDBOX_TIMELINE: tuple[tuple[str, timedelta, str], ...] = (
    (LABEL_CREATED, timedelta(0), "Shipping label created"),
    (PICKED_UP, timedelta(minutes=1), "Picked up by the carrier"),
    (IN_TRANSIT, timedelta(minutes=3), "In transit to the destination depot"),
    (OUT_FOR_DELIVERY, timedelta(minutes=6), "Out for delivery"),
    (DELIVERED, timedelta(minutes=10), "Delivered"),
)


class SandboxCarrier:
    """A pretend carrier whose parcels advance by themselves (see :data:`SANDBOX_TIMELINE`)."""

    name = "sandbox"
    services: tuple[str, ...] = ("standard", "express")
    requires_tracking_number = False

    _RATES: Mapping[str, tuple[int, int, int, int]] = {
        # service: (base, per extra unit, min days, max days)
        "standard": (495, 50, 2, 4),
        "express": (995, 100, 1, 2),
    }

    def quote(self, *, country: str, units: int, currency: str) -> list[RateQuote]:
        quotes = []
        for service, (base, per_unit, low, high) in self._RATES.items():
            amount = base + per_unit * max(units - 1, 0)
            quotes.append(RateQuote(self.name, service, amount, currency, low, high))
        return quotes

    @staticmethod
    def tracking_number_for(shipment_id: str) -> str:
        digest = hashlib.sha256(shipment_id.encode()).digest()
        return "SBX" + str(int.from_bytes(digest[:8], "big") % 10**12).zfill(12)

    async def create_label(
        self, parcel: Parcel, *, service: str | None, tracking_number: str | None
    ) -> Label:
        chosen = _check_service(self, service)
        number = self.tracking_number_for(parcel.shipment_id)
        address = parcel.address
        lines = [
            "SANDBOX CARRIER - NOT A REAL LABEL",
            f"Service: {chosen}",
            f"Tracking: {number}",
            f"From: warehouse {parcel.warehouse_code or '-'}",
            "To: " + ", ".join(str(v) for v in address.values() if v),
            f"Order: {parcel.order_id}  Units: {parcel.units}",
        ]
        return Label(tracking_number=number, tracking_url=None, document="\n".join(lines))

    async def tracking(
        self, *, tracking_number: str, shipped_at: datetime, now: datetime
    ) -> list[TrackingUpdate]:
        places = {
            LABEL_CREATED: None,
            PICKED_UP: "Origin warehouse",
            IN_TRANSIT: "Sorting centre",
            OUT_FOR_DELIVERY: "Local depot",
            DELIVERED: "Destination",
        }
        return [
            TrackingUpdate(status, description, places[status], shipped_at + after)
            for status, after, description in SANDBOX_TIMELINE
            if shipped_at + after <= now
        ]


_CARRIERS: dict[str, Carrier] = {"manual": ManualCarrier(), "sandbox": SandboxCarrier()}


def register_carrier(carrier: Carrier) -> None:
    """Make a carrier adapter available by its name."""
    _CARRIERS[carrier.name] = carrier


def carrier_names() -> list[str]:
    return sorted(_CARRIERS)


def get_carrier(name: str) -> Carrier:
    """The carrier with this name; 422 ``unknown_carrier`` otherwise."""
    carrier = _CARRIERS.get(name)
    if carrier is None:
        raise validation_problem(
            "carrier", f"must be one of {', '.join(carrier_names())}", code="unknown_carrier"
        )
    return carrier


def check_service(carrier: Carrier, service: str | None) -> str:
    return _check_service(carrier, service)


__all__ = [
    "JOURNEY",
    "Carrier",
    "Label",
    "ManualCarrier",
    "Parcel",
    "RateQuote",
    "SandboxCarrier",
    "TrackingUpdate",
    "carrier_names",
    "check_service",
    "check_tracking_number",
    "get_carrier",
    "register_carrier",
]


def carriers() -> list[Carrier]:
    """Every carrier a shipment can use, by name."""
    return [get_carrier(name) for name in carrier_names()]


def offers(*, country: str, units: int, currency: str) -> list[tuple[Carrier, list[RateQuote]]]:
    """Every carrier a shipment can use, with its rate quotes for a parcel of ``units``."""
    found = []
    for carrier in carriers():
        rates = carrier.quote(country=country.upper(), units=units, currency=currency)
        found.append((carrier, rates))
    return found
