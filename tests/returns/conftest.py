"""Returns test helpers: delivered orders (shipped and delivered through the staff API), and
the fulfilment helpers (warehouses, shoppers, the money invariant)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from mercato.db import Database
from mercato.fulfilment.service import SHIPMENTS
from mercato.inventory import service as inventory
from mercato.payments.sandbox import SandboxProvider
from tests.fulfilment.conftest import (
    RealOrder,
    Shopper,
    ada,
    adb,
    fast_password_hashing,
    real_order,
    sandbox,
    ship,
    staff,
    warehouses,
)

__all__ = ["ada", "adb", "fast_password_hashing", "sandbox", "staff", "warehouses"]


async def delivered_order(
    client: httpx.AsyncClient,
    db: Database,
    provider: SandboxProvider,
    customer: Shopper,
    staff: Shopper,
    *,
    quantities: tuple[int, ...] = (2, 1),
    delivered_at: datetime | None = None,
) -> RealOrder:
    """An order shipped in one parcel and delivered (at ``delivered_at``, default now)."""
    placed = await real_order(
        db, provider, user_id=customer.id, email=customer.email, quantities=quantities
    )
    r = await ship(client, staff, placed.order.id)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = {}
    if delivered_at is not None:
        body["delivered_at"] = delivered_at.isoformat()
        async with db.transaction() as conn:  # test setup: it left the day before
            await conn.execute(
                update(SHIPMENTS)
                .where(SHIPMENTS.c.id == r.json()["id"])
                .values(shipped_at=delivered_at - timedelta(days=1))
            )
    r = await client.post(
        f"/api/admin/shipments/{r.json()['id']}/deliver", json=body, headers=staff.headers
    )
    assert r.status_code == 200, r.text
    return placed


async def ask_return(
    client: httpx.AsyncClient,
    customer: Shopper,
    order_id: str,
    lines: list[tuple[str, int]],
    reason: str = "Does not fit",
) -> httpx.Response:
    return await client.post(
        f"/api/orders/{order_id}/returns",
        json={
            "lines": [{"order_line_id": k, "quantity": q} for k, q in lines],
            "reason": reason,
        },
        headers=customer.headers,
    )


async def level(db: Database, variant_id: str, warehouse: str) -> tuple[int, int]:
    async with db.transaction() as conn:
        levels = await inventory.stock_for_variant(conn, variant_id)
    found = next(s for s in levels if s.warehouse_code == warehouse)
    return found.on_hand, found.reserved
