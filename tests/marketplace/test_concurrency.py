"""Two sellers' offers for the same variant, racing with many buyers at the reservation level:
each seller's warehouse sells exactly its stock, never the other's nor the shop's pool."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import UnitOfWork
from mercato.inventory import service as inventory
from mercato.marketplace import service
from mercato.problems import Problem
from tests.marketplace.conftest import approved_seller, make_shop, runtime_of

pytestmark = pytest.mark.usefixtures("backend")

STOCK = {"Alpha": 7, "Beta": 5}
BUYERS_PER_SELLER = 20


async def test_each_seller_sells_exactly_its_stock(
    client: httpx.AsyncClient, app: FastAPI, staff_headers: dict[str, str]
) -> None:
    db = runtime_of(app).db
    shop = await make_shop(db, house_stock=3)
    sellers = {}
    for name, stock in STOCK.items():
        account = await approved_seller(client, app, staff_headers, name)
        r = await client.post(
            "/api/seller/offers",
            headers=account.headers,
            json={"sku": shop.sku, "price": "10.00", "quantity": stock},
        )
        assert r.status_code == 201, r.text
        sellers[account.seller_id] = name

    async def buy(seller_id: str, n: int) -> str | None:
        async def work(uow: UnitOfWork) -> str:
            offer = await service.offer_for_line(uow, shop.variant_id, seller_id, "DE")
            await inventory.reserve(
                uow,
                f"buyer-{seller_id}-{n}",
                [(offer.variant_id, 1)],
                "DE",
                warehouse=offer.warehouse_code,
            )
            return seller_id

        try:
            return await db.run(work)
        except Problem as exc:
            assert exc.code in ("out_of_stock", "offer_unavailable"), exc.code
            return None

    tasks = [buy(s, n) for s in sellers for n in range(BUYERS_PER_SELLER)]
    sold = Counter(s for s in await asyncio.gather(*tasks) if s is not None)
    assert {sellers[s]: n for s, n in sold.items()} == STOCK
    async with db.transaction() as uow:
        levels = {
            s.warehouse_code: s for s in await inventory.stock_for_variant(uow, shop.variant_id)
        }
        assert levels["BER"].reserved == 0 and levels["BER"].available == 3  # the pool untouched
        for seller_id in sellers:
            seller = await service.get_seller(uow, seller_id)
            assert seller is not None and seller.warehouse_code is not None
            assert levels[seller.warehouse_code].available == 0
        assert await inventory.check_ledger(uow) == []
        # A plain reservation (today's checkout) draws on the pool only.
        with pytest.raises(Problem) as refused:
            await inventory.reserve(uow, "plain", [(shop.variant_id, 4)], "DE")
        assert refused.value.code == "out_of_stock"
