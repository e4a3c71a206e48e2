"""Sales-rank test helpers: the fulfilment fixtures (the staff account, the app's database)."""

from __future__ import annotations

from tests.fulfilment.conftest import adb, fast_password_hashing, staff

__all__ = ["adb", "fast_password_hashing", "staff"]
