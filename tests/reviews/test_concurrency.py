"""Helpful votes under concurrency: 50 customers voting at once and one customer voting ten
times at once leave exact counts (one vote row per customer, the counter equal to the rows)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.db import Database
from mercato.payments.sandbox import SandboxProvider
from mercato.reviews import service as reviews
from tests.reviews.conftest import Shopper, received, shopper, stocked_product, write

pytestmark = pytest.mark.usefixtures("warehouse")

VOTERS = 50


async def test_concurrent_helpful_votes_are_counted_exactly(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    await received(client, adb, sandbox, ada, staff, product)
    review_id = (await write(client, ada, product[0], rating=5)).json()["id"]
    voters = [await shopper(app, f"voter{n}@example.com") for n in range(VOTERS)]

    async def vote(who: Shopper) -> int:
        r = await client.post(f"/api/reviews/{review_id}/helpful", headers=who.headers)
        return r.status_code

    # Fifty customers at once, and the first of them nine more times in the same burst.
    statuses = await asyncio.gather(*(vote(v) for v in [*voters, *[voters[0]] * 9]))

    assert statuses.count(200) == VOTERS
    assert statuses.count(409) == 9  # already_voted
    async with adb.transaction() as uow:
        review = await reviews.get_review(uow, review_id)
        rows = await uow.scalar(
            select(func.count())
            .select_from(reviews.VOTES)
            .where(reviews.VOTES.c.review_id == review_id)
        )
    assert review is not None and review.helpful_count == rows == VOTERS


async def test_one_customer_voting_ten_times_at_once_counts_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    ada: Shopper,
    staff: Shopper,
) -> None:
    product = await stocked_product(adb)
    await received(client, adb, sandbox, ada, staff, product)
    review_id = (await write(client, ada, product[0], rating=4)).json()["id"]
    bob = await shopper(app, "bob@example.com")

    responses = await asyncio.gather(
        *(client.post(f"/api/reviews/{review_id}/helpful", headers=bob.headers) for _ in range(10))
    )

    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"already_voted"}
    async with adb.transaction() as uow:
        review = await reviews.get_review(uow, review_id)
    assert review is not None and review.helpful_count == 1
