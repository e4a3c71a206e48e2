"""Public availability on product answers: in_stock per variant and product, low-stock hints,
never the exact count otherwise."""

from __future__ import annotations

import httpx

from mercato.db import Database
from mercato.inventory import service as inventory
from tests.factories import make_product


async def test_product_answers_carry_stock(client: httpx.AsyncClient, db: Database) -> None:
    async with db.transaction() as session:
        product_id, (few, plenty, none) = await make_product(
            session,
            title="Stocked kettle",
            variants=[{"price": 1999}, {"price": 2499}, {"price": 2999}],
        )
    async with db.transaction() as conn:
        await inventory.create_warehouse(conn, code="BER", name="Berlin", countries=["DE"])
        await inventory.receive(conn, few, "BER", 3)
        await inventory.receive(conn, plenty, "BER", 80)

    answer = (await client.get(f"/api/products/{product_id}")).json()
    variants = {v["id"]: v for v in answer["variants"]}
    assert answer["in_stock"] is True
    assert variants[few]["in_stock"] is True
    assert variants[few]["stock_hint"] == "Only 3 left"
    assert variants[plenty]["in_stock"] is True
    assert variants[plenty]["stock_hint"] is None
    assert variants[none]["in_stock"] is False
    assert variants[none]["stock_hint"] is None
    assert not {"available", "on_hand", "quantity"} & set(variants[plenty])

    async with db.transaction() as conn:
        await inventory.adjust(conn, few, "BER", -3, "damaged in storage")
        await inventory.adjust(conn, plenty, "BER", -80, "recount")
    listing = (await client.get("/api/products", params={"limit": 10})).json()["items"]
    listed = next(p for p in listing if p["id"] == product_id)
    assert listed["in_stock"] is False
    assert all(v["in_stock"] is False for v in listed["variants"])
