"""How pages word a delivery estimate."""

from __future__ import annotations

from datetime import date

import pytest

from mercato.checkout.service import Arrival
from mercato.web.templating import arrives_text


@pytest.mark.parametrize(
    ("earliest", "latest", "text"),
    [
        (date(2026, 12, 8), date(2026, 12, 10), "Arrives Tue 8 – Thu 10 Dec"),
        (date(2026, 12, 8), date(2026, 12, 8), "Arrives Tue 8 Dec"),
        (date(2026, 11, 30), date(2026, 12, 2), "Arrives Mon 30 Nov – Wed 2 Dec"),
        (date(2026, 12, 31), date(2027, 1, 4), "Arrives Thu 31 Dec – Mon 4 Jan"),
        (date(2026, 12, 8), date(2027, 12, 10), "Arrives Tue 8 Dec – Fri 10 Dec"),
    ],
)
def test_wording(earliest: date, latest: date, text: str) -> None:
    assert arrives_text(Arrival(earliest, latest)) == text
