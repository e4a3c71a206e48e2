"""Durability: the migration matches the models, the Redis copy is never the only one, and
abandoned guest carts expire."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import Connection, select, update

from mercato import worker
from mercato.cart import events as cart_events
from mercato.cart import service
from mercato.cart.models import cart_lines, carts
from mercato.db import Base, Database, utcnow
from mercato.modules import load_models
from tests.cart.conftest import assert_problem, counts, login, make_customer, new_variant, rt


def _cart_diff(conn: Connection) -> list[Any]:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return bool(name and name.startswith("cart_"))
        table = getattr(obj, "table", None)
        return table is None or str(table.name).startswith("cart_")

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migration_matches_models(db: Database) -> None:
    load_models()
    async with db.engine.connect() as conn:
        diff = await conn.run_sync(_cart_diff)
    assert diff == []


async def test_quantity_check_constraint_holds(db: Database) -> None:
    cart_id = "crt_check"
    now = utcnow()
    async with db.transaction() as session:
        await session.execute(
            carts.insert().values(
                id=cart_id,
                user_id=None,
                currency="EUR",
                created_at=now,
                updated_at=now,
                expires_at=now + timedelta(days=1),
                version=1,
            )
        )
    with pytest.raises(Exception, match=r"(?i)check|constraint"):
        async with db.transaction() as session:
            await session.execute(
                cart_lines.insert().values(
                    id="cl_check",
                    cart_id=cart_id,
                    variant_id="var_x",
                    quantity=0,
                    unit_price_seen=1,
                    currency="EUR",
                    added_at=now,
                    updated_at=now,
                )
            )


# --- the Redis copy ------------------------------------------------------------------------


async def test_redis_copy_is_used_and_never_the_only_copy(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("Redis runs with the production-shaped backend")
    redis = rt(app).redis
    assert redis is not None
    a = await new_variant(app, stock=10)
    b = await new_variant(app, stock=10)
    await client.post("/api/cart/items", json={"variant_id": a, "quantity": 2})
    cart = (await client.post("/api/cart/items", json={"variant_id": b, "quantity": 1})).json()
    key = f"cart:{cart['id']}"
    await service.drain_invalidations()
    assert await redis.get(key) is None  # a change never leaves a copy behind

    first = (await client.get("/api/cart")).json()
    raw = await redis.get(key)
    assert raw is not None
    cached = json.loads(raw)
    assert {ln["variant_id"]: ln["quantity"] for ln in cached["lines"]} == {a: 2, b: 1}
    assert (await client.get("/api/cart")).json() == first

    # A current entry is what GET serves (shown by doctoring it) ...
    doctored = dict(cached, lines=[dict(cached["lines"][0], quantity=7)])
    await redis.set(key, json.dumps(doctored))
    assert [ln["quantity"] for ln in (await client.get("/api/cart")).json()["lines"]] == [7]
    # ... an entry of another version is ignored ...
    await redis.set(key, json.dumps(dict(doctored, version=cached["version"] - 1)))
    assert (await client.get("/api/cart")).json() == first
    # ... a change invalidates it after commit ...
    r = await client.patch(f"/api/cart/items/{first['lines'][0]['id']}", json={"quantity": 3})
    assert r.status_code == 200
    await service.drain_invalidations()
    assert await redis.get(key) is None
    # ... and with Redis emptied the cart is still complete, from the database.
    await client.get("/api/cart")
    await redis.flushall()
    again = (await client.get("/api/cart")).json()
    assert {ln["variant_id"]: ln["quantity"] for ln in again["lines"]} == {a: 3, b: 1}


async def test_redis_failure_falls_back_to_the_database(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    if backend != "postgresql":
        pytest.skip("Redis runs with the production-shaped backend")
    a = await new_variant(app, stock=10)
    await client.post("/api/cart/items", json={"variant_id": a, "quantity": 2})
    runtime = rt(app)
    assert runtime.redis is not None
    broken = service.CartCache(type(runtime.redis).from_url("redis://127.0.0.1:1/0"), 60)
    runtime.extras["cart.cache"] = broken
    real = runtime.redis
    try:
        runtime.redis = broken.redis
        r = await client.get("/api/cart")
        assert r.status_code == 200 and r.json()["lines"][0]["quantity"] == 2
    finally:
        runtime.redis = real
        await broken.redis.aclose()


# --- expiry --------------------------------------------------------------------------------


async def test_expiry_job_removes_only_expired_guest_carts(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    assert "cart.expire_guests" in {j.name for j in worker.jobs()}
    variant = await new_variant(app, stock=50)
    guests = [make_client() for _ in range(3)]
    tokens = []
    for g in guests:
        r = await g.post("/api/cart/items", json={"variant_id": variant, "quantity": 1})
        tokens.append(r.json()["cart_token"])
    email = "loyal@example.com"
    await make_customer(app, email)
    customer = make_client()
    await login(customer, email)
    await customer.post("/api/cart/items", json={"variant_id": variant, "quantity": 1})
    expired_id = (await guests[0].get("/api/cart")).json()["id"]

    runtime = rt(app)
    async with runtime.db.transaction() as session:
        # Abandoned: its expiry has passed. Customer carts have none, even far in the future.
        await session.execute(
            update(carts)
            .where(carts.c.id == expired_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    # An expired cart is gone for its holder even before the job runs.
    assert_problem(await guests[0].get("/api/cart"), 400, "invalid_cart_token")

    assert await cart_events.expire_guest_carts(runtime) == 1
    assert await cart_events.expire_guest_carts(runtime) == 0
    assert await counts(app) == (3, 3, 3)
    async with runtime.db.transaction() as session:
        left = set((await session.execute(select(carts.c.id))).scalars())
    assert expired_id not in left
    for g in guests[1:]:
        assert (await g.get("/api/cart")).status_code == 200
    assert len((await customer.get("/api/cart")).json()["lines"]) == 1

    # A guest cart is refreshed by every change, so only an untouched one ever expires.
    later = utcnow() + timedelta(seconds=runtime.settings.guest_cart_ttl_seconds + 60)
    async with runtime.db.transaction() as session:
        gone = await service.expire_guest_carts(session, now=later)
    assert len(gone) == 2
    assert await counts(app) == (1, 1, 1)
