"""Faults the shop survives: PostgreSQL going away answers 503 ``database_unavailable`` with
Retry-After (never a 500 with a driver error) and the same process serves again once it is
back; Redis going away leaves logging in and filling a cart working on the database path.

The session's own servers are stopped and started again (data and port kept) inside one test;
tests of a worker run one at a time, so nothing else sees the outage."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from fastapi import FastAPI

from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.runtime import Runtime
from mercato.search import service as search
from tests.conftest import TEST_PASSWORD
from tests.factories import make_product
from tests.support.servers import PostgresServer, RedisServer


@pytest.fixture(autouse=True)
def only_postgresql(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("servers to stop: the production-shaped backend")


@contextmanager
def stopped(server: PostgresServer | RedisServer) -> Iterator[None]:
    server.pause()
    try:
        yield
    finally:
        server.resume()


async def test_database_outage_answers_503_then_recovers(
    pg_server: PostgresServer, client: httpx.AsyncClient
) -> None:
    assert (await client.get("/api/categories")).status_code == 200
    with stopped(pg_server):
        for _ in range(3):  # connections the pool held, then new ones refused
            r = await client.get("/api/categories")
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "database_unavailable"
            assert int(r.headers["retry-after"]) >= 1
            assert "asyncpg" not in r.text and "Traceback" not in r.text
        assert (await client.get("/api/health")).status_code == 200  # alive: no I/O
        ready = await client.get("/api/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["database"]["ok"] is False
    # The same process, its pool recycled by itself: every request answers again.
    for _ in range(3):
        assert (await client.get("/api/categories")).status_code == 200


async def test_redis_outage_leaves_login_and_cart_working(
    redis_server: RedisServer, app: FastAPI, client: httpx.AsyncClient
) -> None:
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as uow:
        await identity.create_user(
            uow, email="rita@example.com", password=TEST_PASSWORD, role="customer", name="R"
        )
        _, [variant] = await make_product(uow)
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["DE"])
    async with runtime.db.transaction() as uow:
        await inventory.receive(uow, variant, "BER", 10)
    credentials = {"email": "rita@example.com", "password": TEST_PASSWORD}

    async def shop_once() -> None:
        login = await client.post("/api/auth/login", json=credentials)
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['token']}"}
        added = await client.post(
            "/api/cart/items", json={"variant_id": variant, "quantity": 1}, headers=bearer
        )
        assert added.status_code == 201, added.text
        assert (await client.get("/api/cart", headers=bearer)).status_code == 200
        wrong = await client.post("/api/auth/login", json={**credentials, "password": "nope"})
        assert wrong.status_code == 401, wrong.text  # failures still count, in this process
        guest = await client.post("/api/cart/items", json={"variant_id": variant, "quantity": 1})
        assert guest.status_code == 201, guest.text

    await shop_once()  # with Redis: its caches and buckets in use
    await search.reindex(runtime)
    with stopped(redis_server):
        await shop_once()
        ready = await client.get("/api/ready")  # still serving: Redis is not required
        assert ready.status_code == 200 and ready.json()["status"] == "degraded"
        assert ready.json()["checks"]["redis"]["ok"] is False
    await shop_once()
