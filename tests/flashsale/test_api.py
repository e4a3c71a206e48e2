"""The flash-sale API: the staff's sales and counters, the waiting room's endpoints, who may
call them, and their limits."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from mercato.db import utcnow
from mercato.flashsale import service
from mercato.flashsale.service import RedisGate
from mercato.ratelimit import Rate, RedisTokenBucket
from mercato.runtime import Runtime
from tests.conftest import user_headers
from tests.flashsale.conftest import dead_redis, make_keeper, stocked_variant

ADMIN = "/api/admin/flash-sales"


def _body(variant: str, allocation: int = 3, **changes: Any) -> dict[str, Any]:
    now = utcnow()
    body: dict[str, Any] = {
        "title": "Sneaker drop",
        "variants": [{"variant_id": variant, "allocation": allocation}],
        "price": "49.99",
        "starts_at": (now - timedelta(minutes=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(),
        "admission_rate": 6000,
    }
    return body | changes


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def test_staff_schedule_watch_and_end_a_sale(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    runtime = _runtime(app)
    runtime.extras["flashsale.keeper"] = make_keeper(runtime)
    variant = await stocked_variant(runtime.db, 10)
    created = await client.post(ADMIN, json=_body(variant), headers=staff_headers)
    assert created.status_code == 201, created.text
    sale = created.json()
    assert (sale["price"], sale["currency"], sale["allocation"]) == ("49.99", "EUR", 3)
    assert sale["per_customer_limit"] == 1 and sale["status"] == "live"
    sale_id = sale["id"]

    joined = await client.post(f"/api/flash-sales/{sale_id}/queue", headers=customer_headers)
    assert joined.status_code == 200, joined.text
    assert joined.json()["state"] == "admitted"
    again = await client.post(f"/api/flash-sales/{sale_id}/queue", headers=customer_headers)
    assert again.json()["position"] == joined.json()["position"] == 1
    me = await client.get(f"/api/flash-sales/{sale_id}/queue/me", headers=customer_headers)
    assert me.status_code == 200
    assert me.json()["state"] == "admitted" and me.json()["admission_token"]

    counters = (await client.get(f"{ADMIN}/{sale_id}", headers=staff_headers)).json()
    assert {k: counters[k] for k in ("queued", "admitted", "sold", "held", "remaining")} == {
        "queued": 0,
        "admitted": 1,
        "sold": 0,
        "held": 1,
        "remaining": 2,
    }
    assert counters["gate_remaining"] == 2 and counters["admissions_paused"] is False

    ended = await client.post(f"{ADMIN}/{sale_id}/end", headers=staff_headers)
    assert ended.status_code == 200
    assert ended.json()["status"] == "ended" and ended.json()["remaining"] == 0
    assert ended.json()["expired"] == 1
    late = await client.post(f"/api/flash-sales/{sale_id}/queue", headers=customer_headers)
    assert late.status_code == 409 and late.json()["code"] == "sale_ended"


async def test_refusals(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    variant = await stocked_variant(_runtime(app).db, 2)
    short = await client.post(ADMIN, json=_body(variant, 3), headers=staff_headers)
    assert short.status_code == 409 and short.json()["code"] == "insufficient_stock"
    backwards = _body(variant, 1, ends_at=(utcnow() - timedelta(hours=2)).isoformat())
    bad = await client.post(ADMIN, json=backwards, headers=staff_headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "ends_at"
    unknown = await client.post(ADMIN, json=_body("var_nope", 1), headers=staff_headers)
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "variants[0].variant_id"
    number = await client.post(ADMIN, json=_body(variant, 1, price=49.99), headers=staff_headers)
    assert number.status_code == 422
    cents = await client.post(ADMIN, json=_body(variant, 1, price="4.999"), headers=staff_headers)
    assert cents.status_code == 422 and cents.json()["errors"][0]["field"] == "price"
    missing = await client.get(f"{ADMIN}/fls_missing", headers=staff_headers)
    assert missing.status_code == 404
    nowhere = await client.get("/api/flash-sales/fls_missing/queue/me", headers=customer_headers)
    assert nowhere.status_code == 404


async def test_staff_only(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    variant = await stocked_variant(_runtime(app).db, 2)
    sale_id = (await client.post(ADMIN, json=_body(variant, 1), headers=staff_headers)).json()["id"]
    calls = [
        ("POST", ADMIN, _body(variant, 1)),
        ("GET", f"{ADMIN}/{sale_id}", None),
        ("POST", f"{ADMIN}/{sale_id}/end", None),
    ]
    for method, url, body in calls:
        as_customer = await client.request(method, url, json=body, headers=customer_headers)
        assert as_customer.status_code == 403, url
        anonymous = await client.request(method, url, json=body)
        assert anonymous.status_code == 401, url
    for method, url in (
        ("POST", f"/api/flash-sales/{sale_id}/queue"),
        ("GET", f"/api/flash-sales/{sale_id}/queue/me"),
    ):
        assert (await client.request(method, url)).status_code == 401
    not_joined = await client.get(f"/api/flash-sales/{sale_id}/queue/me", headers=customer_headers)
    assert not_joined.status_code == 404 and not_joined.json()["code"] == "not_in_queue"


async def test_rate_limited_with_retry_after(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    runtime = _runtime(app)
    runtime.extras["flashsale.keeper"] = make_keeper(runtime, customer_rate=Rate(3, 1 / 60))
    variant = await stocked_variant(runtime.db, 2)
    sale_id = (await client.post(ADMIN, json=_body(variant, 1), headers=staff_headers)).json()["id"]
    url = f"/api/flash-sales/{sale_id}/queue"
    answers = [await client.post(url, headers=customer_headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    refused = await client.get(url + "/me", headers=customer_headers)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert int(refused.headers["Retry-After"]) >= 1
    # Another customer from the same address still gets in.
    other = await user_headers(app, "customer", "other@example.com")
    assert (await client.post(url, headers=other)).status_code == 200
    # The address has its own allowance.
    runtime.extras["flashsale.keeper"] = make_keeper(runtime, ip_rate=Rate(1, 1 / 60))
    third = await user_headers(app, "customer", "third@example.com")
    assert (await client.post(url, headers=third)).status_code == 200
    assert (await client.post(url, headers=other)).status_code == 429


async def test_redis_unreachable_answers_waiting_not_500(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    runtime = _runtime(app)
    down = dead_redis()
    try:
        keeper = make_keeper(runtime, gate=RedisGate(down), pace=RedisTokenBucket(down))
        keeper.limiter = RedisTokenBucket(down)
        runtime.extras["flashsale.keeper"] = keeper
        runtime.extras["flashsale.gate"] = keeper.gate
        variant = await stocked_variant(runtime.db, 2)
        created = await client.post(ADMIN, json=_body(variant, 1), headers=staff_headers)
        assert created.status_code == 201
        sale_id = created.json()["id"]
        joined = await client.post(f"/api/flash-sales/{sale_id}/queue", headers=customer_headers)
        assert joined.status_code == 200, joined.text
        assert joined.json()["state"] == "waiting" and joined.json()["paused"] is True
        counters = (await client.get(f"{ADMIN}/{sale_id}", headers=staff_headers)).json()
        assert counters["admissions_paused"] is True and counters["held"] == 0
        async with runtime.db.transaction() as uow:
            assert (await service.get_sale(uow, sale_id)).held == 0
    finally:
        await down.aclose()
