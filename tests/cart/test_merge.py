"""Merging a guest cart into the customer's on login: two devices, idempotence, the rule."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from mercato.cart import service
from mercato.cart.models import cart_lines, carts
from mercato.db import Database, utcnow
from mercato.ids import new_id
from tests.cart.conftest import assert_problem, counts, login, make_customer, new_variant


async def add(client: httpx.AsyncClient, variant_id: str, quantity: int) -> httpx.Response:
    r = await client.post("/api/cart/items", json={"variant_id": variant_id, "quantity": quantity})
    assert r.status_code == 201, r.text
    return r


def quantities(cart: dict[str, Any]) -> dict[str, int]:
    return {ln["variant_id"]: ln["quantity"] for ln in cart["lines"]}


async def test_login_merges_guest_cart_across_two_devices(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    x = await new_variant(app, stock=20)
    y = await new_variant(app, stock=20)
    email = "shopper@example.com"
    await make_customer(app, email)

    device_a, device_b = make_client(), make_client()
    await add(device_a, x, 2)
    guest = (await add(device_a, y, 1)).json()
    await login(device_b, email)
    customer_cart = (await add(device_b, x, 5)).json()
    assert customer_cart["cart_token"] is None

    r = await login(device_a, email)
    set_cookie = r.headers.get_list("set-cookie")
    assert any(c.startswith("mercato_cart=") and "max-age=0" in c.lower() for c in set_cookie)
    assert "mercato_cart" not in device_a.cookies

    seen_a = (await device_a.get("/api/cart")).json()
    seen_b = (await device_b.get("/api/cart")).json()
    assert seen_a["id"] == seen_b["id"] == customer_cart["id"]
    assert quantities(seen_a) == quantities(seen_b) == {x: 5, y: 1}
    assert await counts(app) == (1, 2, 6)
    # The guest cart is gone: its token no longer opens anything.
    stale = await make_client().get("/api/cart", headers={"X-Cart-Token": guest["cart_token"]})
    assert_problem(stale, 400, "invalid_cart_token")

    # Logging in again with the stale token (another tab) changes nothing and does not fail.
    tab = make_client()
    await login(tab, email, headers={"X-Cart-Token": guest["cart_token"]})
    assert quantities((await tab.get("/api/cart")).json()) == {x: 5, y: 1}
    assert await counts(app) == (1, 2, 6)


async def test_guest_quantity_wins_when_higher_and_customer_price_seen_is_kept(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    from tests.cart.conftest import set_price

    x = await new_variant(app, price=1000, stock=20)
    email = "pricey@example.com"
    await make_customer(app, email)
    customer = make_client()
    await login(customer, email)
    await add(customer, x, 1)  # seen at 10.00
    await set_price(app, x, 1200)
    guest = make_client()
    await add(guest, x, 3)  # seen at 12.00
    await login(guest, email)
    (line,) = (await guest.get("/api/cart")).json()["lines"]
    assert line["quantity"] == 3
    assert line["unit_price_seen"] == "10.00" and line["price_changed"] is True


async def test_registering_merges_too(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    x = await new_variant(app, stock=20)
    device = make_client()
    await add(device, x, 2)
    r = await device.post(
        "/api/auth/register",
        json={
            "email": "new@example.com",
            "password": "correct horse battery staple",
            "name": "New",
        },
    )
    assert r.status_code == 201, r.text
    cart = (await device.get("/api/cart")).json()
    assert quantities(cart) == {x: 2} and cart["cart_token"] is None
    assert await counts(app) == (1, 1, 2)


async def test_login_with_a_forged_token_still_logs_in(
    app: FastAPI, make_client: Callable[[], httpx.AsyncClient]
) -> None:
    email = "forger@example.com"
    await make_customer(app, email)
    device = make_client()
    device.cookies.set("mercato_cart", "forged.token")
    await login(device, email)
    assert (await device.get("/api/cart")).json()["lines"] == []
    assert await counts(app) == (0, 0, 0)


# --- the rule itself, on the service ---------------------------------------------------------

VARIANTS = [f"var_merge{i}" for i in range(6)]
carts_strategy = st.dictionaries(st.sampled_from(VARIANTS), st.integers(1, 99), max_size=6)


async def _cart_with(db: Database, user_id: str | None, lines: dict[str, int]) -> str:
    now = utcnow()
    cart_id = new_id("crt")
    async with db.transaction() as session:
        await session.execute(
            insert(carts).values(
                id=cart_id,
                user_id=user_id,
                currency="EUR",
                created_at=now,
                updated_at=now,
                expires_at=None if user_id else now + timedelta(days=1),
                version=1,
            )
        )
        if lines:
            await session.execute(
                insert(cart_lines),
                [
                    {
                        "id": new_id("cl"),
                        "cart_id": cart_id,
                        "variant_id": v,
                        "quantity": q,
                        "unit_price_seen": 100 + q,
                        "currency": "EUR",
                        "added_at": now,
                        "updated_at": now,
                    }
                    for v, q in lines.items()
                ],
            )
    return cart_id


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(guest=carts_strategy, customer=carts_strategy, customer_has_cart=st.booleans())
async def test_merge_is_union_with_higher_quantity(
    db: Database, guest: dict[str, int], customer: dict[str, int], customer_has_cart: bool
) -> None:
    user_id = new_id("usr")
    guest_id = await _cart_with(db, None, guest)
    if customer_has_cart or customer:
        await _cart_with(db, user_id, customer)
    else:
        customer = {}

    async with db.transaction() as session:
        merged_id = await service.merge_carts(session, guest_id, user_id)
    async with db.transaction() as session:
        merged = await service.get_cart_for(session, user_id, None)
        guest_left = (await session.execute(select(carts).where(carts.c.id == guest_id))).first()
        guest_lines = (
            await session.execute(select(cart_lines).where(cart_lines.c.cart_id == guest_id))
        ).all()
        # Merging the same (now gone) guest cart again does nothing.
        assert await service.merge_carts(session, guest_id, user_id) is None

    assert guest_left is None and guest_lines == []
    if not guest and not customer_has_cart and not customer:
        assert merged is None or merged.lines == ()
        return
    assert merged is not None and merged.id == merged_id
    got = {line.variant_id: line.quantity for line in merged.lines}
    assert set(got) == set(guest) | set(customer)
    for variant in got:
        assert got[variant] == max(guest.get(variant, 0), customer.get(variant, 0))
    for line in merged.lines:
        # The customer's price seen stays; guest-only lines bring theirs.
        source = customer if line.variant_id in customer else guest
        assert line.unit_price_seen == 100 + source[line.variant_id]
