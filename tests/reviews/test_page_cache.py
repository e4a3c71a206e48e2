"""A product page served from the page cache shows a review once it is approved (the rating
change reaches the cache through the outbox)."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from mercato import worker
from mercato.db import Database
from mercato.payments.sandbox import SandboxProvider
from tests.reviews.conftest import Shopper, received, staff_post, stocked_product, write

pytestmark = pytest.mark.usefixtures("warehouse")
HTML = {"accept": "text/html"}


async def test_an_approved_review_shows_on_the_cached_product_page(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    page = f"/p/{product[0]}"
    await received(client, adb, sandbox, ada, staff, product)
    await worker.run_once(app.state.runtime)
    review = (await write(client, ada, product[0], rating=4, title="Sturdy lid")).json()["id"]
    assert "Sturdy lid" not in (await client.get(page, headers=HTML)).text
    assert "Sturdy lid" not in (await client.get(page, headers=HTML)).text  # from the cache
    assert (await staff_post(client, staff, review, "approve")).status_code == 200
    await worker.run_once(app.state.runtime)
    assert "Sturdy lid" in (await client.get(page, headers=HTML)).text
