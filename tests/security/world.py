"""One small shop where every kind of caller owns something, for the authorization matrix.

Customer C1 has an address, a cart line, a delivered order bought from seller S1 with a
return requested on it, a review, a wishlist entry and a flash-sale purchase; customer C2 owns
nothing of theirs. Seller S1 has an offer, its part of C1's order and that return; seller S2
has an offer of its own. Staff run the back office. Every object is made through the API or
the owning module's service, as a real shop would make it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import httpx
from fastapi import FastAPI

from mercato.checkout import service as checkout
from mercato.db import utcnow
from mercato.events import dispatcher
from mercato.flashsale import service as flashsale
from mercato.identity import service as identity
from mercato.identity.deps import COOKIE_NAME
from mercato.inventory import service as inventory
from mercato.marketplace import service as marketplace
from mercato.orders import service as orders
from mercato.search import service as search
from tests.checkout.conftest import ADDRESS
from tests.flashsale.conftest import make_keeper, new_sale
from tests.marketplace.conftest import approved_seller, make_shop, runtime_of

ACTORS = ("anonymous", "customer", "other_customer", "seller", "other_seller", "staff")


@dataclass(frozen=True, slots=True)
class Actor:
    token: str | None

    def api_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def page_headers(self) -> dict[str, str]:
        """A browser on the shop's pages: the session cookie (the Origin is the client's)."""
        return {"Cookie": f"{COOKIE_NAME}={self.token}"} if self.token else {}


@dataclass
class World:
    actors: dict[str, Actor]
    params: dict[str, str] = field(default_factory=dict)


def _token(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def _user(app: FastAPI, role: str, email: str) -> tuple[identity.UserInfo, str]:
    runtime = runtime_of(app)
    async with runtime.db.transaction() as uow:
        user = await identity.create_user(
            uow, email=email, password="authz-password-1", role=role, name=email.split("@")[0]
        )
        token = await identity.issue_token(uow, user.id, runtime.settings.token_ttl_seconds)
    return user, token


def _ok(r: httpx.Response, *statuses: int) -> httpx.Response:
    assert r.status_code in (statuses or (200, 201)), (r.request.method, r.request.url, r.text)
    return r


async def build_world(client: httpx.AsyncClient, app: FastAPI) -> World:
    runtime = runtime_of(app)
    db = runtime.db
    shop = await make_shop(db, house_stock=0)
    async with db.transaction() as uow:
        [zone] = await checkout.list_zones(uow)
        await checkout.create_shipping_method(
            uow, zone_id=zone.id, code="standard", name="Standard", kind="flat", amount=490,
            currency="EUR",
        )  # fmt: skip
        rule = await marketplace.create_rule(
            uow, marketplace.RuleDraft(rate="10", currency="EUR"), None
        )
        await inventory.receive(uow, shop.other_sku, "BER", 20)
    _, staff_token = await _user(app, "staff", "staff@example.com")
    staff = {"Authorization": f"Bearer {staff_token}"}
    s1 = await approved_seller(client, app, staff, "Alpha")
    s2 = await approved_seller(client, app, staff, "Beta")
    c1_user, c1_token = await _user(app, "customer", "c1@example.com")
    _, c2_token = await _user(app, "customer", "c2@example.com")
    c1 = {"Authorization": f"Bearer {c1_token}"}

    offers = {}
    for seller, price in ((s1, "18.00"), (s2, "19.00")):
        r = await client.post(
            "/api/seller/offers",
            headers=seller.headers,
            json={"sku": shop.sku, "price": price, "quantity": 5, "shipping": "3.00"},
        )
        offers[seller.seller_id] = _ok(r).json()["id"]

    # C1 buys two units from S1; the order is shipped and delivered; one unit comes back.
    r = await client.post(
        "/api/cart/items?country=DE",
        headers=c1,
        json={"variant_id": shop.variant_id, "seller_id": s1.seller_id, "quantity": 2},
    )
    _ok(r)
    r = await client.post(
        "/api/checkout",
        headers={**c1, "Idempotency-Key": "authz-world"},
        json={
            "shipping_address": ADDRESS,
            "shipping_method": "standard",
            "payment_token": "tok_visa",
        },
    )
    order_id = _ok(r).json()["order_id"]
    await dispatcher.dispatch_once(runtime)
    r = await client.post(
        f"/api/admin/orders/{order_id}/shipments", json={"carrier": "sandbox"}, headers=staff
    )
    shipment_id = _ok(r).json()["id"]
    _ok(await client.post(f"/api/admin/shipments/{shipment_id}/deliver", headers=staff))
    async with db.transaction() as uow:
        order = await orders.get_order(uow, order_id)
    assert order is not None and order.status == "delivered", order
    [part] = [p for p in order.parts if p.seller_id == s1.seller_id]
    r = await client.post(
        f"/api/orders/{order_id}/returns",
        headers=c1,
        json={"lines": [{"order_line_id": order.lines[0].id, "quantity": 1}], "reason": "Broken"},
    )
    return_id = str(_ok(r).json()["id"])

    # C1's address, cart line, review and wishlist entry.
    r = await client.post("/api/me/addresses", headers=c1, json=ADDRESS)
    address_id = _ok(r).json()["id"]
    r = await client.post(
        "/api/cart/items?country=DE",
        headers=c1,
        json={"variant_id": shop.variant_id, "seller_id": s2.seller_id, "quantity": 1},
    )
    line_id = _ok(r).json()["lines"][0]["id"]
    r = await client.post(
        f"/api/products/{shop.product_id}/reviews", headers=c1, json={"rating": 4, "title": "Fine"}
    )
    review_id = _ok(r).json()["id"]
    _ok(await client.post(f"/api/admin/reviews/{review_id}/approve", headers=staff))
    _ok(await client.post("/api/me/wishlist", headers=c1, json={"product_id": shop.product_id}))

    # A live flash sale of the other variant, C1's purchase queued in it.
    runtime.extras["flashsale.keeper"] = make_keeper(runtime)
    now = utcnow()
    sale = await new_sale(
        db,
        await _variant_id(client, staff, shop.product_id, shop.other_sku),
        10,
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        now=now - timedelta(minutes=2),
    )
    state = await flashsale.join(
        db, flashsale.keeper_for(runtime), sale.id, c1_user.id, ip="10.0.0.1"
    )
    assert state.admission_token, state
    queued = await checkout.enqueue_purchase(
        runtime,
        c1_user,
        sale.id,
        "authz-flash",
        checkout.PurchaseRequest(
            admission_token=state.admission_token,
            shipping_address=ADDRESS,
            payment_token="tok_visa",
        ),
    )

    params = {
        "product_id": shop.product_id,
        "variant_id": shop.variant_id,
        "sku": shop.sku,
        "ident": shop.product_id,
        "order_id": order_id,
        "address_id": address_id,
        "line_id": line_id,
        "review_id": review_id,
        "return_id": return_id,
        "shipment_id": shipment_id,
        "intent_id": order.payment_intent_id or "missing",
        "offer_id": offers[s1.seller_id],
        "seller_id": s1.seller_id,
        "order_line_id": order.lines[0].id,
        "order_part_id": part.id,
        "part_id": part.id,
        "rule_id": rule.id,
        "sale_id": sale.id,
        "purchase_id": queued.purchase_id,
        "code": "BER",
        "checkout_id": order.checkout_id,
        "order_number": order.id,
    }
    await search.reindex(runtime)
    actors = {
        "anonymous": Actor(None),
        "customer": Actor(c1_token),
        "other_customer": Actor(c2_token),
        "seller": Actor(_token(s1.headers)),
        "other_seller": Actor(_token(s2.headers)),
        "staff": Actor(staff_token),
    }
    return World(actors, params)


async def _variant_id(
    client: httpx.AsyncClient, staff: dict[str, str], product_id: str, sku: str
) -> str:
    r = _ok(await client.get(f"/api/admin/products/{product_id}", headers=staff))
    [variant] = [v for v in r.json()["variants"] if v["sku"] == sku]
    return str(variant["id"])
