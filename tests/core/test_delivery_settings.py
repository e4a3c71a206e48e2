"""The shop's working calendar: ``MERCATO_TIMEZONE`` (an IANA name, checked at start) and
``MERCATO_ORDER_CUTOFF_HOUR``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mercato.checkout.service import delivery_clock
from mercato.settings import Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MERCATO_TIMEZONE", raising=False)
    monkeypatch.delenv("MERCATO_ORDER_CUTOFF_HOUR", raising=False)
    settings = Settings()
    assert (settings.timezone, settings.order_cutoff_hour) == ("Europe/Berlin", 14)
    clock = delivery_clock(settings)
    assert (clock.timezone.key, clock.cutoff_hour) == ("Europe/Berlin", 14)


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MERCATO_TIMEZONE", "America/New_York")
    monkeypatch.setenv("MERCATO_ORDER_CUTOFF_HOUR", "24")
    settings = Settings()
    assert (settings.timezone, settings.order_cutoff_hour) == ("America/New_York", 24)


@pytest.mark.parametrize("name", ["", "Europe", "Mars/Olympus", "../etc/passwd", "/etc/localtime"])
def test_an_unknown_time_zone_is_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="MERCATO_TIMEZONE must be an IANA time zone"):
        Settings(timezone=name)


@pytest.mark.parametrize("hour", [-1, 25])
def test_a_cut_off_outside_the_day_is_refused(hour: int) -> None:
    with pytest.raises(ValidationError, match="order_cutoff_hour"):
        Settings(order_cutoff_hour=hour)
