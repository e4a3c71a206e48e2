"""Many clients editing one cart at once: no lost line, no bad quantity, a serial outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI

from tests.cart.conftest import counts, login, make_customer, new_variant

MAX = 99  # the default per-line maximum


async def test_concurrent_edits_of_one_cart(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    kept = [await new_variant(app, stock=1000) for _ in range(4)]
    patched = await new_variant(app, stock=1000)
    deleted = await new_variant(app, stock=1000)
    capped = await new_variant(app, stock=1000)

    first = make_client()
    r = await first.post("/api/cart/items", json={"variant_id": patched, "quantity": 1})
    token = r.json()["cart_token"]
    headers = {"X-Cart-Token": token}
    await first.post("/api/cart/items", json={"variant_id": deleted, "quantity": 1})
    cart = (await first.post("/api/cart/items", json={"variant_id": capped, "quantity": 60})).json()
    ids = {ln["variant_id"]: ln["id"] for ln in cart["lines"]}

    clients = [make_client() for _ in range(10)]
    ops: list[Awaitable[httpx.Response]] = []
    for i, c in enumerate(clients):
        # 10 clients x 3 adds of one unit, spread over the kept variants.
        for round_ in range(3):
            variant = kept[(i + round_) % len(kept)]
            ops.append(
                c.post(
                    "/api/cart/items", json={"variant_id": variant, "quantity": 1}, headers=headers
                )
            )
        ops.append(
            c.patch(f"/api/cart/items/{ids[patched]}", json={"quantity": i + 2}, headers=headers)
        )
        if i < 4:
            ops.append(c.delete(f"/api/cart/items/{ids[deleted]}", headers=headers))
        if i < 5:
            # 60 + 5 x 10 would pass the maximum: exactly three of these fit.
            ops.append(
                c.post(
                    "/api/cart/items", json={"variant_id": capped, "quantity": 10}, headers=headers
                )
            )
    responses = await asyncio.gather(*ops)

    by_kind: dict[str, list[int]] = {"add": [], "patch": [], "delete": [], "cap": []}
    for r in responses:
        body: dict[str, Any] = r.json()
        if r.request.method == "PATCH":
            by_kind["patch"].append(r.status_code)
        elif r.request.method == "DELETE":
            by_kind["delete"].append(r.status_code)
        elif b'"quantity":10' in r.request.content:
            by_kind["cap"].append(r.status_code)
            if r.status_code != 201:
                assert body["code"] == "quantity_limit"
        else:
            by_kind["add"].append(r.status_code)
    assert set(by_kind["add"]) == {201}
    assert set(by_kind["patch"]) == {200}
    assert sorted(by_kind["delete"]) == [200, 404, 404, 404]
    assert sorted(by_kind["cap"]) == [201, 201, 201, 422, 422]

    final = (await first.get("/api/cart", headers=headers)).json()
    got = {ln["variant_id"]: ln["quantity"] for ln in final["lines"]}
    # Every add landed: 30 adds of one unit over the four kept variants.
    assert {v: got[v] for v in kept} == {
        kept[k]: sum(1 for i in range(10) for rnd in range(3) if (i + rnd) % 4 == k)
        for k in range(4)
    }
    assert deleted not in got
    assert got[patched] in {i + 2 for i in range(10)}
    assert got[capped] == 90
    assert all(1 <= q <= MAX for q in got.values())
    assert len(final["lines"]) == len(kept) + 2
    rows = await counts(app)
    assert (rows.carts, rows.lines) == (1, len(kept) + 2)


async def test_two_devices_create_the_customer_cart_at_once(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    variants = [await new_variant(app, stock=100) for _ in range(6)]
    email = "busy@example.com"
    await make_customer(app, email)
    devices = [make_client() for _ in range(3)]
    for d in devices:
        await login(d, email)

    rs = await asyncio.gather(
        *(
            devices[i % 3].post("/api/cart/items", json={"variant_id": v, "quantity": 2})
            for i, v in enumerate(variants)
        )
    )
    assert {r.status_code for r in rs} == {201}
    assert len({r.json()["id"] for r in rs}) == 1
    cart = (await devices[0].get("/api/cart")).json()
    assert {ln["variant_id"]: ln["quantity"] for ln in cart["lines"]} == {v: 2 for v in variants}
    assert await counts(app) == (1, 6, 12)
