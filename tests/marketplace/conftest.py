"""Marketplace test helpers: a shop with a pooled Berlin warehouse, one product, and sellers
applied and approved through the API."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from mercato.catalog import service as catalog
from mercato.checkout import service as checkout
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from tests.conftest import user_headers
from tests.factories import make_product


@dataclass(frozen=True, slots=True)
class Shop:
    product_id: str
    variant_id: str
    sku: str
    other_sku: str


def runtime_of(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def make_shop(db: Database, *, house_stock: int = 10) -> Shop:
    async with db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["DE", "FR"])
        await checkout.create_zone(uow, name="Europe", countries=["DE", "FR"])
        pid, [vid, _other] = await make_product(
            uow,
            title="Kettle",
            variants=[
                {"sku": "KETTLE-1", "price": 2000, "weight_grams": 900},
                {"sku": "KETTLE-2", "price": 2500},
            ],
        )
        if house_stock:
            await inventory.receive(uow, "KETTLE-1", "BER", house_stock)
        assert await catalog.get_variants(uow, [vid])
    return Shop(pid, vid, "KETTLE-1", "KETTLE-2")


@dataclass(frozen=True, slots=True)
class SellerAccount:
    seller_id: str
    headers: dict[str, str]
    warehouse_code: str


async def approved_seller(
    client: httpx.AsyncClient,
    app: FastAPI,
    staff: dict[str, str],
    name: str,
    ship_to: tuple[str, ...] = ("DE", "FR"),
) -> SellerAccount:
    headers = await user_headers(app, "customer", f"{name.lower()}@example.com")
    r = await client.post(
        "/api/sellers/apply",
        headers=headers,
        json={
            "name": name,
            "legal_name": f"{name} GmbH",
            "email": f"{name.lower()}@example.com",
            "country": "DE",
            "ship_to": list(ship_to),
            "payout_reference": f"acct_{name.lower()}",
        },
    )
    assert r.status_code == 201, r.text
    seller = r.json()
    assert seller["status"] == "pending"
    r = await client.post(f"/api/admin/sellers/{seller['id']}/approve", headers=staff)
    assert r.status_code == 200, r.text
    return SellerAccount(seller["id"], headers, seller["warehouse_code"])


async def add_seller(db: Database, seller_id: str) -> str:
    """An approved seller row, for ledger tests that need no account nor warehouse."""
    from mercato.marketplace.models import Seller

    async with db.transaction() as uow:
        uow.add(
            Seller(
                id=seller_id,
                name=seller_id,
                legal_name=seller_id,
                email=f"{seller_id}@example.com",
                country="DE",
                description="",
                status="approved",
                is_house=False,
                orders_counted=0,
                defect_rate_bp=0,
                late_shipment_rate_bp=0,
                cancel_rate_bp=0,
                rating_count=0,
                eligible=True,
            )
        )
    return seller_id


async def add_category(db: Database, name: str) -> str:
    from tests.factories import make_category

    async with db.transaction() as uow:
        return (await make_category(uow, name)).id
