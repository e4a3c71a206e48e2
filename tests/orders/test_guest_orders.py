"""A guest's order after the checkout: the confirmation mail's signed link, the lookup by number
and e-mail (rate-limited, silent about which half was wrong), cancelling and returning by the
access token, staff seeing it, and the order joining the account of its verified e-mail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from mercato import worker
from mercato.db import Database
from mercato.inventory import service as inventory
from mercato.notifications import mail
from mercato.notifications.service import EMAILS
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.payments.sandbox import SandboxProvider
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.checkout.conftest import Shop, make_variant, shop, stock
from tests.checkout.test_guest_checkout import guest_cart, post_guest
from tests.orders.conftest import real_order, shopper
from tests.support.smtp import SmtpServer, parts, running_smtp_server, with_smtp

ORDER_LINK = re.compile(r"https://shop\.example/orders/(ord_[0-9a-z]+)\?token=([A-Za-z0-9_-]+)")
VERIFY_LINK = re.compile(r"https://shop\.example/account/verify-email\?token=([A-Za-z0-9_-]+)")
LOOKUPS = 5

__all__ = ["shop"]  # the fixture


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return with_smtp(settings, smtp_server).model_copy(
        update={"order_lookups_per_ip_per_minute": LOOKUPS}
    )


def rt(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def deliver(app: FastAPI) -> None:
    """One worker pass: the outbox becomes mails, and the mails go to the SMTP server."""
    await worker.run_once(rt(app))


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def guest_order(
    client: httpx.AsyncClient, db: Database, email: str = "Guest@Example.com", quantity: int = 1
) -> tuple[str, str]:
    """A guest checkout through the API; (order id, variant id)."""
    variant = await make_variant(db, stock=10)
    client.cookies.clear()
    response = await post_guest(client, await guest_cart(db, (variant, quantity)), email=email)
    assert response.status_code == 201, response.text
    return response.json()["order_id"], variant


def order_link(smtp: SmtpServer, order_id: str) -> str:
    """The access token in the link of the last mail about ``order_id``."""
    for message in reversed(smtp.messages):
        text, html = parts(message)
        found = ORDER_LINK.search(text)
        if found is not None and found.group(1) == order_id:
            assert found.group(0) in html.replace("&amp;", "&")
            return found.group(2)
    raise AssertionError(f"no mail links to {order_id}")


ORDER_IDS = st.text(alphabet="abcdefghjkmnpqrstvwxyz0123456789_", min_size=1, max_size=30)
ADDRESSES = st.emails().map(str.lower)


@given(ORDER_IDS, ADDRESSES, ORDER_IDS, ADDRESSES)
def test_an_access_token_opens_one_order_of_one_email(
    order_a: str, email_a: str, order_b: str, email_b: str
) -> None:
    token = orders.order_access_token("a-secret", order_a, email_a)
    same = (order_a, email_a) == (order_b, email_b)
    assert (orders.order_access_token("a-secret", order_b, email_b) == token) == same
    # Another shop's secret makes another token; a token is URL-safe as it is.
    assert orders.order_access_token("another-secret", order_a, email_a) != token
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", token)


async def test_the_confirmation_mail_links_to_the_order_and_the_link_opens_only_it(
    client: httpx.AsyncClient, app: FastAPI, db: Database, shop: Shop, smtp_server: SmtpServer
) -> None:
    order_id, _ = await guest_order(client, db)
    other_id, _ = await guest_order(client, db, email="other@example.com")

    await deliver(app)

    [mine] = [m for m in smtp_server.messages if m["To"] == "guest@example.com"]
    assert order_id in mine["Subject"]
    token = order_link(smtp_server, order_id)
    # Derived when sent: the mail log keeps a placeholder, never the token.
    async with rt(app).db.transaction() as uow:
        stored = list((await uow.scalars(select(EMAILS.c.message))).all())
    assert not any(token in m for m in stored)
    assert any(mail.LINK_TOKEN in m for m in stored)

    r = await client.get(f"/api/guest-orders/{order_id}", headers={"X-Order-Token": token})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == order_id and r.json()["email"] == "guest@example.com"
    for path, used in (
        (f"/api/guest-orders/{other_id}", token),  # another order
        (f"/api/guest-orders/{order_id}", token[:-2] + "xx"),  # a token changed
        ("/api/guest-orders/ord_unknown", token),
    ):
        r = await client.get(path, headers={"X-Order-Token": used})
        assert_problem(r, 404, "not_found")


async def test_lookup_answers_the_same_for_a_wrong_email_and_an_unknown_order(
    client: httpx.AsyncClient, app: FastAPI, db: Database, shop: Shop, smtp_server: SmtpServer
) -> None:
    order_id, _ = await guest_order(client, db)
    await deliver(app)

    found = await client.get(
        "/api/orders/lookup", params={"order_number": order_id, "email": " GUEST@example.com"}
    )
    assert found.status_code == 200, found.text
    assert found.json()["id"] == order_id
    assert found.json()["access_token"] == order_link(smtp_server, order_id)

    wrong_email = await client.get(
        "/api/orders/lookup", params={"order_number": order_id, "email": "nobody@example.com"}
    )
    unknown = await client.get(
        "/api/orders/lookup",
        params={"order_number": "ord_00000000000000000000000000", "email": "guest@example.com"},
    )
    a = assert_problem(wrong_email, 404, "order_not_found")
    b = assert_problem(unknown, 404, "order_not_found")
    assert a == b

    # Not an e-mail at all: a 422 naming the field, which says nothing about the order.
    bad = await client.get(
        "/api/orders/lookup", params={"order_number": order_id, "email": "not-an-address"}
    )
    assert [e["field"] for e in assert_problem(bad, 422, "validation_error")["errors"]] == ["email"]


async def test_lookups_are_rate_limited_per_client_ip(
    client: httpx.AsyncClient, db: Database, shop: Shop
) -> None:
    order_id, _ = await guest_order(client, db)
    params = {"order_number": order_id, "email": "guest@example.com"}

    answers = [(await client.get("/api/orders/lookup", params=params)) for _ in range(LOOKUPS)]
    refused = await client.get("/api/orders/lookup", params=params)

    assert [a.status_code for a in answers] == [200] * LOOKUPS
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1


async def test_a_guest_cancels_by_the_access_token(
    client: httpx.AsyncClient, app: FastAPI, db: Database, shop: Shop
) -> None:
    order_id, variant = await guest_order(client, db, quantity=2)
    assert await stock(db, variant) == (8, 0)
    token = orders.order_access_token("test-secret-key", order_id, "guest@example.com")

    refused = await client.post(
        f"/api/guest-orders/{order_id}/cancel", headers={"X-Order-Token": "nope"}
    )
    assert_problem(refused, 404, "not_found")

    r = await client.post(
        f"/api/guest-orders/{order_id}/cancel",
        json={"reason": "Ordered twice"},
        headers={"X-Order-Token": token},
    )
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["timeline"][-1]["reason"] == "Ordered twice"
    assert await stock(db, variant) == (10, 0)
    again = await client.post(
        f"/api/guest-orders/{order_id}/cancel", headers={"X-Order-Token": token}
    )
    assert_problem(again, 409, "invalid_transition")
    # The cancelled order's charge was voided: no live charge, the ledger balanced.
    async with db.transaction() as uow:
        assert await inventory.check_ledger(uow) == []
        assert (await payments.sandbox_charge_summary(uow)).charges == 0


async def test_a_guest_requests_a_return_by_the_access_token(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    runtime = rt(app)
    async with runtime.db.transaction() as uow:
        await inventory.create_warehouse(uow, code="ORD1", name="First", countries=["DE"])
    provider = payments.get_provider(runtime)
    assert isinstance(provider, SandboxProvider)
    placed = await real_order(runtime.db, provider, user_id=None, email="guest@example.com")
    staff = await shopper(app, "picker@example.com", role="staff")
    order_id = placed.order.id
    shipped = await client.post(
        f"/api/admin/orders/{order_id}/shipments",
        json={"carrier": "sandbox"},
        headers=staff.headers,
    )
    assert shipped.status_code == 201, shipped.text
    delivered = await client.post(
        f"/api/admin/shipments/{shipped.json()['id']}/deliver", json={}, headers=staff.headers
    )
    assert delivered.status_code == 200, delivered.text
    token = orders.order_access_token("test-secret-key", order_id, "guest@example.com")
    line = placed.order.lines[0]
    body = {"lines": [{"order_line_id": line.id, "quantity": 1}], "reason": "Too small"}

    refused = await client.post(
        f"/api/guest-orders/{order_id}/returns", json=body, headers={"X-Order-Token": "x" * 43}
    )
    assert_problem(refused, 404, "not_found")
    r = await client.post(
        f"/api/guest-orders/{order_id}/returns", json=body, headers={"X-Order-Token": token}
    )

    assert r.status_code == 201, r.text
    listed = await client.get(
        f"/api/guest-orders/{order_id}/returns", headers={"X-Order-Token": token}
    )
    assert [x["id"] for x in listed.json()["items"]] == [r.json()["id"]]
    order = await client.get(f"/api/guest-orders/{order_id}", headers={"X-Order-Token": token})
    assert order.json()["status"] == "return_requested"
    assert order.json()["timeline"][-1]["actor"] == "guest"


async def test_staff_see_guest_orders(
    client: httpx.AsyncClient, app: FastAPI, db: Database, shop: Shop
) -> None:
    order_id, _ = await guest_order(client, db)
    staff = await shopper(app, "boss@example.com", role="staff")

    listed = await client.get(
        "/api/admin/orders", params={"email": "guest@example.com"}, headers=staff.headers
    )
    one = await client.get(f"/api/admin/orders/{order_id}", headers=staff.headers)

    assert [(o["id"], o["user_id"]) for o in listed.json()["items"]] == [(order_id, None)]
    assert one.status_code == 200 and one.json()["user_id"] is None


async def test_guest_orders_join_the_account_once_its_email_is_verified(
    client: httpx.AsyncClient, app: FastAPI, db: Database, shop: Shop, smtp_server: SmtpServer
) -> None:
    first, _ = await guest_order(client, db, email="ada@example.com")
    someone_elses, _ = await guest_order(client, db, email="bob@example.com")
    client.cookies.clear()
    registered = await client.post(
        "/api/auth/register",
        json={"email": "ADA@example.com", "password": "a long enough password", "name": "Ada"},
    )
    assert registered.status_code == 201, registered.text
    bearer = {"Authorization": f"Bearer {registered.json()['token']}"}

    # Registering proves nothing about the mailbox: no order joins yet.
    assert (await client.get("/api/orders", headers=bearer)).json()["items"] == []
    await deliver(app)
    texts = [parts(m)[0] for m in smtp_server.messages if m["To"] == "ada@example.com"]
    [link] = [m.group(1) for t in texts if (m := VERIFY_LINK.search(t))]
    verified = await client.post("/api/auth/verify-email", json={"token": link})
    assert verified.status_code == 204, verified.text

    mine = (await client.get("/api/orders", headers=bearer)).json()["items"]
    assert [o["id"] for o in mine] == [first]
    assert (await client.get(f"/api/orders/{first}", headers=bearer)).status_code == 200

    # A later guest order with the verified address joins at the next login.
    later, _ = await guest_order(client, db, email="ada@example.com")
    client.cookies.clear()
    logged_in = await client.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": "a long enough password"}
    )
    assert logged_in.status_code == 200, logged_in.text
    again = {"Authorization": f"Bearer {logged_in.json()['token']}"}
    mine = (await client.get("/api/orders", headers=again)).json()["items"]
    assert sorted(o["id"] for o in mine) == sorted([first, later])
    async with rt(app).db.transaction() as uow:
        other = await orders.get_order(uow, someone_elses)
        # Joining twice changes nothing (idempotent), and never touches others' orders.
        user = (await orders.get_order(uow, first)).user_id  # type: ignore[union-attr]
    assert other is not None and other.user_id is None and user is not None
