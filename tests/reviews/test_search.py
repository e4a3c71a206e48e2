"""Ratings reach the search index from the outbox: after approvals (and a rejection), one
worker pass later the rating facet's counts, the hits' ratings, the rating filter and the
rating sort equal a brute-force answer over the approved reviews."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato import worker
from mercato.db import Database
from mercato.payments.sandbox import SandboxProvider
from mercato.search import service as search
from mercato.search.query import RATING_STEPS
from mercato.settings import Settings
from tests.reviews.conftest import (
    Shopper,
    received,
    shopper,
    staff_post,
    stocked_product,
    truth,
    write,
)

pytestmark = pytest.mark.usefixtures("warehouse")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A few customers review many products within seconds here: no burst flags.
    return settings.model_copy(update={"review_burst_count": 1000, "review_extreme_count": 1000})


# Per product, the stars each customer gives ("t": with text, so staff approve it; "x": with
# text, rejected). Averages 4.67, 4.0, 3.5, 2.0, 1.0 and one product nobody rates.
PLAN: list[list[str]] = [
    ["5", "5", "4t"],
    ["4", "4t"],
    ["3", "4", "2x"],
    ["2t"],
    ["1"],
    [],
]


async def _search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    r = await client.get("/api/search", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_rating_facet_filter_and_sort_follow_approvals(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    staff: Shopper,
) -> None:
    runtime = app.state.runtime
    products = [await stocked_product(adb, f"Review kettle {n}") for n in range(len(PLAN))]
    customers = [await shopper(app, f"c{n}@example.com") for n in range(3)]
    await search.reindex(runtime)
    body = await _search(client, q="kettle", facets="rating")
    assert body["total"] == len(PLAN)
    assert all(f["count"] == 0 for f in body["facets"]["rating"])  # nobody rated anything yet

    for product, plan in zip(products, PLAN, strict=True):
        for customer, spec in zip(customers, plan, strict=False):
            await received(client, adb, sandbox, customer, staff, product)
            text = {"body": "Does what it says."} if spec[1:] else {}
            r = await write(client, customer, product[0], rating=int(spec[0]), **text)
            assert r.status_code == 201, r.text
            if spec.endswith("t"):
                await staff_post(client, staff, r.json()["id"], "approve")
            elif spec.endswith("x"):
                await staff_post(client, staff, r.json()["id"], "reject", {"reason": "Rude"})
    await worker.run_once(runtime)  # the outbox to the index, then the index's commit

    averages = {p[0]: (await truth(adb, p[0])).average for p in products}
    assert sorted(a for a in averages.values() if a is not None) == [1.0, 2.0, 3.5, 4.0, 14 / 3]
    body = await _search(client, q="kettle", facets="rating")
    expected = [
        {"gte": step, "count": sum(1 for a in averages.values() if a is not None and a >= step)}
        for step in RATING_STEPS
    ]
    assert body["facets"]["rating"] == expected
    ratings = {h["id"]: h["rating"] for h in body["hits"]}
    assert ratings == {p: (round(a, 2) if a else None) for p, a in averages.items()}

    body = await _search(client, q="kettle", rating_gte=3.5)
    assert {h["id"] for h in body["hits"]} == {
        p for p, a in averages.items() if a is not None and a >= 3.5
    }
    body = await _search(client, q="kettle", sort="rating", limit=3)
    rated = sorted((a, p) for p, a in averages.items() if a is not None)
    assert [h["id"] for h in body["hits"]] == [p for _, p in reversed(rated)][:3]
