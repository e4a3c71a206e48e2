"""The delivery-date rule: business days in the shop's time zone, the order cut-off, handling
and transit days. Examples first, then the properties every answer keeps."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mercato.checkout.arrival import (
    Arrival,
    DeliveryClock,
    add_business_days,
    counts_from,
    dispatch_day,
    estimate_arrival,
    is_business_day,
)

BERLIN = DeliveryClock.of("Europe/Berlin", 14)


def at(local: str, zone: str = "Europe/Berlin") -> datetime:
    """A local wall time in ``zone`` as the UTC instant the shop's clock would give."""
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)


def days(earliest: str, latest: str) -> Arrival:
    return Arrival(date.fromisoformat(earliest), date.fromisoformat(latest))


# --------------------------------------------------------------------------------------------
# Examples (3 Dec 2026 is a Thursday)


@pytest.mark.parametrize(
    ("ordered", "handling", "transit", "expected"),
    [
        # Before the cut-off: counts from today, leaves tomorrow.
        ("2026-12-03T10:00", 1, (2, 5), days("2026-12-08", "2026-12-11")),
        # After it: counts from Friday, leaves Monday.
        ("2026-12-03T15:00", 1, (1, 3), days("2026-12-08", "2026-12-10")),
        # The cut-off hour itself is after it.
        ("2026-12-03T14:00", 0, (1, 1), days("2026-12-07", "2026-12-07")),
        ("2026-12-03T13:59", 0, (1, 1), days("2026-12-04", "2026-12-04")),
        # Friday after the cut-off and the weekend count from Monday.
        ("2026-12-04T16:00", 1, (1, 2), days("2026-12-09", "2026-12-10")),
        ("2026-12-05T09:00", 1, (1, 2), days("2026-12-09", "2026-12-10")),
        ("2026-12-06T23:59", 1, (1, 2), days("2026-12-09", "2026-12-10")),
        # Transit over a weekend: leaves Friday, arrives Monday to Wednesday.
        ("2026-12-03T09:00", 1, (1, 3), days("2026-12-07", "2026-12-09")),
        # Across a month's end, a year's end, and three weeks of handling.
        ("2026-11-26T09:00", 1, (1, 3), days("2026-11-30", "2026-12-02")),
        ("2026-12-30T09:00", 0, (1, 2), days("2026-12-31", "2027-01-01")),
        ("2026-12-03T09:00", 15, (0, 0), days("2026-12-24", "2026-12-24")),
    ],
)
def test_examples(ordered: str, handling: int, transit: tuple[int, int], expected: Arrival) -> None:
    assert estimate_arrival(at(ordered), BERLIN, handling, *transit) == expected


def test_the_parcel_leaves_after_the_handling_days() -> None:
    assert dispatch_day(at("2026-12-03T15:00"), BERLIN, 0) == date(2026, 12, 4)
    assert dispatch_day(at("2026-12-03T15:00"), BERLIN, 1) == date(2026, 12, 7)
    assert dispatch_day(at("2026-12-03T09:00"), BERLIN, 6) == date(2026, 12, 11)


def test_the_shops_time_zone_decides_the_day() -> None:
    # 23:30 UTC on Thursday is already Friday in Berlin, still Thursday in New York.
    ordered = datetime(2026, 12, 3, 23, 30, tzinfo=UTC)
    assert counts_from(ordered, DeliveryClock.of("Europe/Berlin", 24)) == date(2026, 12, 4)
    assert counts_from(ordered, DeliveryClock.of("America/New_York", 24)) == date(2026, 12, 3)


def test_the_cut_off_is_local_wall_time_on_both_sides_of_a_clock_change() -> None:
    # Berlin moves from UTC+1 to UTC+2 on Sunday 29 March 2026.
    assert counts_from(at("2026-03-27T13:59"), BERLIN) == date(2026, 3, 27)  # 12:59 UTC
    assert counts_from(at("2026-03-30T13:59"), BERLIN) == date(2026, 3, 30)  # 11:59 UTC
    assert counts_from(at("2026-03-30T14:00"), BERLIN) == date(2026, 3, 31)  # 12:00 UTC
    # And back on Sunday 25 October 2026.
    assert counts_from(at("2026-10-23T14:00"), BERLIN) == date(2026, 10, 26)
    assert counts_from(at("2026-10-26T13:59"), BERLIN) == date(2026, 10, 26)


def test_cut_off_zero_and_twenty_four() -> None:
    early = at("2026-12-03T00:00")
    late = at("2026-12-03T23:59")
    assert counts_from(early, DeliveryClock.of("Europe/Berlin", 0)) == date(2026, 12, 4)
    assert counts_from(late, DeliveryClock.of("Europe/Berlin", 24)) == date(2026, 12, 3)


def test_refusals() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        counts_from(datetime(2026, 12, 3, 9), BERLIN)
    with pytest.raises(ValueError, match="min_days"):
        estimate_arrival(at("2026-12-03T09:00"), BERLIN, 1, 3, 2)
    with pytest.raises(ValueError, match="cut-off"):
        DeliveryClock.of("Europe/Berlin", 25)


def test_arrival_as_json() -> None:
    assert days("2026-12-08", "2026-12-10").to_json() == {
        "earliest": "2026-12-08",
        "latest": "2026-12-10",
    }


# --------------------------------------------------------------------------------------------
# Properties

ZONES = (
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Pacific/Auckland",
    "Asia/Kolkata",
    "America/St_Johns",
    "UTC",
)
instants = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31), timezones=st.just(UTC)
)
clocks = st.builds(DeliveryClock.of, st.sampled_from(ZONES), st.integers(0, 24))
handling = st.integers(0, 30)
transit = st.tuples(st.integers(0, 30), st.integers(0, 30)).map(sorted)


@given(instants, clocks, handling, transit)
def test_never_on_a_weekend_and_never_before_the_order(
    ordered: datetime, clock: DeliveryClock, handling_days: int, span: list[int]
) -> None:
    found = estimate_arrival(ordered, clock, handling_days, *span)
    assert is_business_day(found.earliest)
    assert is_business_day(found.latest)
    assert found.earliest <= found.latest
    assert found.earliest >= ordered.astimezone(clock.timezone).date()


@given(instants, st.integers(0, 10 * 24 * 3600), clocks, handling, transit)
def test_a_later_order_never_arrives_sooner(
    ordered: datetime, later_by: int, clock: DeliveryClock, handling_days: int, span: list[int]
) -> None:
    first = estimate_arrival(ordered, clock, handling_days, *span)
    second = estimate_arrival(ordered + timedelta(seconds=later_by), clock, handling_days, *span)
    assert first.earliest <= second.earliest
    assert first.latest <= second.latest


@given(instants, clocks, handling, transit)
def test_more_handling_or_transit_never_arrives_sooner(
    ordered: datetime, clock: DeliveryClock, handling_days: int, span: list[int]
) -> None:
    low, high = span
    base = estimate_arrival(ordered, clock, handling_days, low, high)
    slower = estimate_arrival(ordered, clock, handling_days + 1, low, high + 1)
    assert slower.earliest > base.earliest
    assert slower.latest > base.latest


@given(instants, clocks)
def test_cut_off_respected(ordered: datetime, clock: DeliveryClock) -> None:
    local = ordered.astimezone(clock.timezone)
    start = counts_from(ordered, clock)
    assert is_business_day(start)
    if is_business_day(local.date()) and local.hour < clock.cutoff_hour:
        assert start == local.date()
    else:
        # The next business day: nothing but weekend days in between.
        assert start > local.date()
        gap = (start - local.date()).days
        between = [local.date() + timedelta(days=d) for d in range(1, gap)]
        assert not any(is_business_day(d) for d in between)


@given(st.dates(date(2020, 1, 1), date(2035, 12, 31)), st.sampled_from(ZONES), st.integers(0, 24))
def test_only_the_local_wall_clock_counts(day: date, zone: str, cutoff: int) -> None:
    """Whatever the UTC offset that day (a clock change included), every moment of one local
    day before the cut-off counts from the same day, and every moment after it from the same
    next day."""
    clock = DeliveryClock.of(zone, cutoff)
    tz = ZoneInfo(zone)
    moments = [
        datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz, fold=fold)
        for hour in range(24)
        for minute in (0, 59)
        for fold in (0, 1)
    ]
    before = {counts_from(m, clock) for m in moments if m.hour < cutoff}
    after = {counts_from(m, clock) for m in moments if m.hour >= cutoff}
    assert len(before) <= 1
    assert len(after) <= 1
    if before and after:
        assert before != after or not is_business_day(day)


@settings(max_examples=50)
@given(st.dates(date(2020, 1, 1), date(2035, 12, 31)), st.integers(0, 60))
def test_business_days_counted_one_by_one(day: date, count: int) -> None:
    start = day
    while not is_business_day(start):
        start += timedelta(days=1)
    stepped = start
    for _ in range(count):
        stepped += timedelta(days=1)
        while not is_business_day(stepped):
            stepped += timedelta(days=1)
    assert add_business_days(start, count) == stepped
