"""When a parcel arrives: the delivery-date rule, pure.

Work happens on business days (Monday to Friday, in the shop's time zone; public holidays are
not known). An order counts from the day it is placed when that is a business day and it
comes before the shop's cut-off hour, else from the next business day. The serving warehouse
hands the parcel to the carrier ``handling_days`` business days after that day, and the carrier
delivers ``min_days`` to ``max_days`` business days after it has it.

So with a 14:00 cut-off, one handling day and a method taking 1 to 3 days, an order on
Thursday at 15:00 counts from Friday, leaves on Monday and arrives Tuesday to Thursday.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

_SATURDAY = 5


@dataclass(frozen=True, slots=True)
class Arrival:
    """The first and the last day the parcel may arrive on (local dates of the shop)."""

    earliest: date
    latest: date

    def to_json(self) -> dict[str, str]:
        return {"earliest": self.earliest.isoformat(), "latest": self.latest.isoformat()}


@dataclass(frozen=True, slots=True)
class DeliveryClock:
    """The shop's working calendar: its time zone and the hour after which an order counts
    from the next business day (24: never)."""

    timezone: ZoneInfo
    cutoff_hour: int

    @classmethod
    def of(cls, timezone: str, cutoff_hour: int) -> DeliveryClock:
        if not 0 <= cutoff_hour <= 24:
            raise ValueError("the cut-off hour is from 0 to 24")
        return cls(ZoneInfo(timezone), cutoff_hour)


def is_business_day(day: date) -> bool:
    return day.weekday() < _SATURDAY


def next_business_day(day: date) -> date:
    """The first business day after ``day``."""
    day += timedelta(days=1)
    while not is_business_day(day):
        day += timedelta(days=1)
    return day


def add_business_days(day: date, count: int) -> date:
    """``count`` business days after the business day ``day`` (``day`` itself for 0)."""
    if count < 0:
        raise ValueError("count must not be negative")
    weeks, rest = divmod(count, 5)
    day += timedelta(weeks=weeks)
    for _ in range(rest):
        day = next_business_day(day)
    return day


def counts_from(ordered_at: datetime, clock: DeliveryClock) -> date:
    """The business day an order placed at ``ordered_at`` (timezone-aware) counts from."""
    if ordered_at.tzinfo is None:
        raise ValueError("ordered_at must be timezone-aware")
    local = ordered_at.astimezone(clock.timezone)
    today = local.date()
    if is_business_day(today) and local.hour < clock.cutoff_hour:
        return today
    return next_business_day(today)


def dispatch_day(ordered_at: datetime, clock: DeliveryClock, handling_days: int) -> date:
    """The business day the parcel leaves the warehouse."""
    return add_business_days(counts_from(ordered_at, clock), handling_days)


def arrival_after(dispatched: date, min_days: int, max_days: int) -> Arrival:
    """When a parcel handed to the carrier on the business day ``dispatched`` arrives with a
    method taking ``min_days`` to ``max_days`` business days."""
    if not 0 <= min_days <= max_days:
        raise ValueError("need 0 <= min_days <= max_days")
    return Arrival(add_business_days(dispatched, min_days), add_business_days(dispatched, max_days))


def estimate_arrival(
    ordered_at: datetime,
    clock: DeliveryClock,
    handling_days: int,
    min_days: int,
    max_days: int,
) -> Arrival:
    """When an order placed at ``ordered_at`` arrives (the whole rule in one call)."""
    return arrival_after(dispatch_day(ordered_at, clock, handling_days), min_days, max_days)
