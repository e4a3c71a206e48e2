"""Who may do what: every endpoint of the API and every back-office and seller-portal page,
called by each kind of caller, against a table that says what each one must get.

The table is keyed by the app's own route table (``(method, path template)``): a route without
a row fails the test by name, so a new endpoint cannot ship without saying who may call it,
and a row for a route that is gone fails too. The shop's storefront pages (``/``, ``/p/...``,
``/account/...``) are left to the web tests; everything under ``/api/``, ``/admin`` and
``/seller`` is here.

The six callers are anonymous, customer C1, another customer C2, seller S1, another seller S2
and staff (see ``world.py``). Path parameters always name C1's or S1's objects, so a row says:

* ``ok``: the caller passed the authorization check, whatever the answer then is (2xx, 3xx,
  or a refusal of the request itself: 400, 409, 422...); never 401, 403, 404 nor a 5xx;
* ``any``: the same, but 404 is allowed too: a back-office path whose id the world does not
  make (a webhook, a fulfilment), so only "not refused" is asserted;
* ``401``, ``403``: refused for who the caller is;
* ``404``: someone else's object, answered as if it did not exist.

Cheap and honest requests. Unsafe requests carry a body the allowed caller's request is refused
for (an empty object, a quantity past what was delivered, a carrier that does not exist) so
that the world stays as it was for the next row. That cannot hide a missing check:

* identity is a dependency, resolved before FastAPI reports body errors, so a caller refused
  for who they are gets 401/403 whatever the body (every staff endpoint answers an anonymous
  ``{}`` with 401, not 422: the table proves it on each row);
* an ownership check lives in the handler, after the body is parsed, so a row whose 404
  matters gets a *well-formed* body (see ``BODIES``) that only the service refuses.

The few requests that must change something (deleting C1's address, archiving the product)
run after all the others, in the order of ``LAST``; within a row the owner and staff go last.
The logout endpoints are called with throwaway tokens of each caller.

Authorization does not depend on the storage backend, so this runs on SQLite only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, routing

from mercato.identity import service as identity
from mercato.identity.deps import COOKIE_NAME, CSRF_COOKIE, make_csrf_token
from mercato.web.security import CSRF_FIELD
from tests.marketplace.conftest import runtime_of
from tests.security.world import ACTORS, World, build_world

COVERED = ("/api/", "/admin", "/seller")

# anonymous, customer C1, other customer C2, seller S1, other seller S2, staff
PUBLIC = ("ok", "ok", "ok", "ok", "ok", "ok")
SIGNED_IN = ("401", "ok", "ok", "ok", "ok", "ok")
MINE = ("401", "ok", "404", "404", "404", "404")  # C1's own object
STAFF = ("401", "403", "403", "403", "403", "ok")
STAFF_ANY = ("401", "403", "403", "403", "403", "any")
SELLERS = ("401", "403", "403", "ok", "ok", "ok")  # a seller's own list; staff see all
SELLERS_OBJ = ("401", "403", "403", "ok", "404", "ok")  # S1's object
PORTAL = ("401", "403", "403", "ok", "ok", "403")  # the seller portal is for sellers only
PORTAL_OBJ = ("401", "403", "403", "ok", "404", "403")
TOKEN_404 = ("404",) * 6  # opened by an order's access token; a forged one opens nothing

MATRIX: dict[str, tuple[str, ...]] = {
    # identity
    "POST /api/auth/register": PUBLIC,
    "POST /api/auth/login": PUBLIC,
    "POST /api/auth/logout": SIGNED_IN,
    "POST /api/auth/logout-all": SIGNED_IN,
    "GET /api/me": SIGNED_IN,
    "POST /api/auth/password": SIGNED_IN,
    "POST /api/auth/password-reset": PUBLIC,
    "POST /api/auth/password-reset/confirm": PUBLIC,
    "POST /api/auth/verify-email": PUBLIC,
    "POST /api/auth/verify-email/resend": SIGNED_IN,
    "GET /api/me/addresses": SIGNED_IN,
    "POST /api/me/addresses": SIGNED_IN,
    "PATCH /api/me/addresses/{address_id}": MINE,
    "DELETE /api/me/addresses/{address_id}": MINE,
    # catalog
    "GET /api/categories": PUBLIC,
    "GET /api/categories/{slug}": ("any",) * 6,
    "GET /api/brands": PUBLIC,
    "POST /api/admin/categories": STAFF,
    "PATCH /api/admin/categories/{category_id}": STAFF_ANY,
    "POST /api/admin/brands": STAFF,
    "POST /api/admin/products": STAFF,
    "GET /api/admin/products/{product_id}": STAFF,
    "PATCH /api/admin/products/{product_id}": STAFF,
    "POST /api/admin/products/{product_id}/archive": STAFF,
    "POST /api/admin/products/{product_id}/variants": STAFF,
    "PATCH /api/admin/variants/{variant_id}": STAFF,
    # inventory
    "POST /api/admin/inventory/warehouses": STAFF,
    "PATCH /api/admin/inventory/warehouses/{code}": STAFF,
    "GET /api/admin/inventory/warehouses": STAFF,
    "POST /api/admin/inventory/receive": STAFF,
    "POST /api/admin/inventory/adjust": STAFF,
    "GET /api/admin/inventory/reservations": STAFF,
    "POST /api/admin/inventory/reservations": STAFF,
    "POST /api/admin/inventory/reservations/{owner}/commit": STAFF_ANY,
    "POST /api/admin/inventory/reservations/{owner}/release": STAFF_ANY,
    "GET /api/admin/inventory/check": STAFF,
    "GET /api/admin/inventory/{sku}": STAFF,
    "GET /api/inventory/availability": PUBLIC,
    # reviews: anyone signed in may vote for or report a published review
    "GET /api/products/{product_id}/reviews": PUBLIC,
    "POST /api/products/{product_id}/reviews": SIGNED_IN,
    "PATCH /api/reviews/{review_id}": MINE,
    "DELETE /api/reviews/{review_id}": MINE,
    "POST /api/reviews/{review_id}/helpful": ("401", "403", "ok", "ok", "ok", "ok"),  # own_review
    "POST /api/reviews/{review_id}/report": SIGNED_IN,
    "GET /api/admin/reviews": STAFF,
    "GET /api/admin/reviews/settings": STAFF,
    "PUT /api/admin/reviews/settings": STAFF,
    "POST /api/admin/reviews/{review_id}/approve": STAFF_ANY,
    "POST /api/admin/reviews/{review_id}/reject": STAFF,
    "POST /api/admin/reviews/{review_id}/respond": STAFF,
    # cart: a guest has a cart too; a line is only ever found in its own cart
    "GET /api/cart": PUBLIC,
    "POST /api/cart/items": PUBLIC,
    "PATCH /api/cart/items/{line_id}": ("404", "ok", "404", "404", "404", "404"),
    "DELETE /api/cart/items/{line_id}": ("404", "ok", "404", "404", "404", "404"),
    "DELETE /api/cart": PUBLIC,
    # payments
    "GET /api/admin/payments/sandbox/charges": STAFF,
    "GET /api/admin/payments/{intent_id}": STAFF,
    # orders
    "GET /api/orders/lookup": TOKEN_404,
    "GET /api/guest-orders/{order_id}": TOKEN_404,
    "POST /api/guest-orders/{order_id}/cancel": TOKEN_404,
    "GET /api/orders": SIGNED_IN,
    "GET /api/orders/{order_id}": MINE,
    "POST /api/orders/{order_id}/cancel": MINE,
    "GET /api/admin/orders": STAFF,
    "GET /api/admin/orders/{order_id}": STAFF,
    "POST /api/admin/orders/{order_id}/cancel": STAFF,
    "POST /api/admin/orders/{order_id}/transition": STAFF,
    # marketplace
    "POST /api/sellers/apply": SIGNED_IN,
    "GET /api/sellers/{seller_id}": PUBLIC,
    "GET /api/seller/offers": SELLERS,
    "POST /api/seller/offers": SELLERS,
    "POST /api/seller/offers/import": SELLERS,
    "GET /api/seller/offers/{offer_id}": SELLERS_OBJ,
    "PATCH /api/seller/offers/{offer_id}": SELLERS_OBJ,
    "GET /api/admin/sellers": STAFF,
    "POST /api/admin/sellers/{seller_id}/approve": STAFF,
    "POST /api/admin/sellers/{seller_id}/suspend": STAFF,
    "GET /api/products/{product_id}/offers": PUBLIC,
    "GET /api/admin/commission-rules": STAFF,
    "POST /api/admin/commission-rules": STAFF,
    "DELETE /api/admin/commission-rules/{rule_id}": STAFF,
    "POST /api/admin/payouts": STAFF,
    "GET /api/seller/statements": SELLERS,
    # checkout
    "GET /api/checkout/shipping-methods": PUBLIC,
    "POST /api/checkout/quote": PUBLIC,
    "POST /api/checkout": PUBLIC,
    "GET /api/checkout/{checkout_id}": MINE,
    "GET /api/products/{product_id}/delivery": PUBLIC,
    "GET /api/admin/checkout/zones": STAFF,
    "POST /api/admin/checkout/zones": STAFF,
    "GET /api/admin/checkout/shipping-methods": STAFF,
    "POST /api/admin/checkout/shipping-methods": STAFF,
    "GET /api/admin/checkout/tax-rates": STAFF,
    "PUT /api/admin/checkout/tax-rates": STAFF,
    "GET /api/admin/checkout/promo-codes": STAFF,
    "POST /api/admin/checkout/promo-codes": STAFF,
    "GET /api/admin/checkout/settings": STAFF,
    "PUT /api/admin/checkout/settings": STAFF,
    # flash sales
    "POST /api/flash-sales/{sale_id}/checkout": SIGNED_IN,
    "GET /api/flash-sales/{sale_id}/purchases/{purchase_id}": MINE,
    "POST /api/admin/flash-sales": STAFF,
    "GET /api/admin/flash-sales/{sale_id}": STAFF,
    "POST /api/admin/flash-sales/{sale_id}/end": STAFF,
    "POST /api/flash-sales/{sale_id}/queue": SIGNED_IN,
    "GET /api/flash-sales/{sale_id}/queue/me": SIGNED_IN,  # each caller's own place
    # search
    "GET /api/search": PUBLIC,
    "GET /api/search/suggest": PUBLIC,
    "GET /api/products": PUBLIC,
    "GET /api/products/{product_id}": PUBLIC,
    "GET /api/admin/search/synonyms": STAFF,
    "POST /api/admin/search/synonyms": STAFF,
    "DELETE /api/admin/search/synonyms/{synonym_id}": STAFF_ANY,
    "GET /api/admin/search/status": STAFF,
    # recommendations
    "GET /api/products/{product_id}/recommendations": PUBLIC,
    "GET /api/me/recommendations": SIGNED_IN,
    "GET /api/me/wishlist": SIGNED_IN,
    "POST /api/me/wishlist": SIGNED_IN,
    "DELETE /api/me/wishlist/{product_id}": MINE,
    # fulfilment
    "GET /api/orders/{order_id}/tracking": MINE,
    "GET /api/seller/orders": SELLERS,
    "GET /api/seller/orders/{order_part_id}": SELLERS_OBJ,
    "POST /api/seller/orders/{order_part_id}/shipments": SELLERS_OBJ,
    "GET /api/admin/fulfilments": STAFF,
    "GET /api/admin/fulfilments/{fulfilment_id}": STAFF_ANY,
    "POST /api/admin/fulfilments/{fulfilment_id}/{step}": STAFF_ANY,
    "GET /api/admin/orders/{order_id}/fulfilments": STAFF,
    "POST /api/admin/orders/{order_id}/allocate": STAFF,
    "POST /api/admin/orders/{order_id}/shipments": STAFF,
    "GET /api/admin/orders/{order_id}/shipments": STAFF,
    "GET /api/admin/shipments/{shipment_id}": STAFF,
    "POST /api/admin/shipments/{shipment_id}/deliver": STAFF,
    "GET /api/admin/carriers": STAFF,
    # returns
    "POST /api/orders/{order_id}/returns": MINE,
    "POST /api/guest-orders/{order_id}/returns": TOKEN_404,
    "GET /api/guest-orders/{order_id}/returns": TOKEN_404,
    "GET /api/orders/{order_id}/returns": MINE,
    "GET /api/admin/returns": STAFF,
    "GET /api/admin/returns/{return_id}": STAFF,
    "POST /api/admin/returns/{return_id}/receive": STAFF,
    "POST /api/admin/returns/{return_id}/refund": STAFF,
    "POST /api/admin/returns/{return_id}/{decision}": STAFF,
    # notifications
    "GET /api/admin/notifications/emails": STAFF,
    "GET /api/admin/notifications/emails/{email_id}": STAFF_ANY,
    "POST /api/admin/webhooks": STAFF,
    "GET /api/admin/webhooks": STAFF,
    "GET /api/admin/webhooks/{endpoint_id}": STAFF_ANY,
    "PATCH /api/admin/webhooks/{endpoint_id}": STAFF_ANY,
    "POST /api/admin/webhooks/{endpoint_id}/rotate-secret": STAFF_ANY,
    "DELETE /api/admin/webhooks/{endpoint_id}": STAFF_ANY,
    "GET /api/admin/webhooks/{endpoint_id}/deliveries": STAFF_ANY,
    "POST /api/admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry": STAFF_ANY,
    # the app
    "GET /api/health": PUBLIC,
    "GET /api/ready": PUBLIC,
    "GET /api/docs": PUBLIC,
}

# The back office: staff only, for every page and every form it posts.
ADMIN_PAGES = """
GET /admin
GET /admin/
GET /admin/orders
GET /admin/orders/{order_id}
POST /admin/orders/{order_id}/allocate
POST /admin/orders/{order_id}/fulfilments/{fulfilment_id}/{step} any
POST /admin/orders/{order_id}/ship
POST /admin/orders/{order_id}/shipments/{shipment_id}/deliver
POST /admin/orders/{order_id}/shipments/{shipment_id}/capture
POST /admin/orders/{order_id}/cancel
POST /admin/orders/{order_id}/release-payment
POST /admin/orders/{order_id}/refund
POST /admin/orders/{order_id}/transition
GET /admin/returns
GET /admin/returns/{return_id}
POST /admin/returns/{return_id}/receive
POST /admin/returns/{return_id}/refund
POST /admin/returns/{return_id}/{decision}
GET /admin/reviews
POST /admin/reviews/{review_id}/approve any
POST /admin/reviews/{review_id}/reject
POST /admin/reviews/{review_id}/respond
POST /admin/reviews/settings
GET /admin/inventory
GET /admin/inventory/check
POST /admin/inventory/receive
POST /admin/inventory/adjust
GET /admin/products
GET /admin/products/row
GET /admin/products/new
POST /admin/products
GET /admin/products/{product_id}
POST /admin/products/{product_id}
POST /admin/products/{product_id}/archive
POST /admin/products/{product_id}/variants
GET /admin/products/{product_id}/variants/{variant_id}
POST /admin/products/{product_id}/variants/{variant_id}
GET /admin/promos
GET /admin/promos/new
POST /admin/promos
POST /admin/promos/{promo_id}/active any
GET /admin/flash-sales
GET /admin/flash-sales/new
GET /admin/flash-sales/{sale_id}
GET /admin/flash-sales/{sale_id}/counters
POST /admin/flash-sales/{sale_id}/end
POST /admin/flash-sales
GET /admin/sellers
GET /admin/sellers/{seller_id}
POST /admin/sellers/{seller_id}/approve
POST /admin/sellers/{seller_id}/suspend
GET /admin/commissions
GET /admin/commissions/new
POST /admin/commissions
POST /admin/commissions/{rule_id}/deactivate
GET /admin/ledger
GET /admin/payouts
POST /admin/payouts
GET /admin/shipping
POST /admin/shipping/zones
POST /admin/shipping/methods
GET /admin/tax
POST /admin/tax/rates
POST /admin/tax/settings
GET /admin/webhooks
POST /admin/webhooks
GET /admin/webhooks/{endpoint_id} any
POST /admin/webhooks/{endpoint_id} any
POST /admin/webhooks/{endpoint_id}/active any
POST /admin/webhooks/{endpoint_id}/rotate-secret any
GET /admin/webhooks/{endpoint_id}/delete any
POST /admin/webhooks/{endpoint_id}/delete any
POST /admin/webhooks/{endpoint_id}/deliveries/{delivery_id}/retry any
GET /admin/emails
"""
for _line in ADMIN_PAGES.strip().splitlines():
    _method, _path, *_flag = _line.split()
    MATRIX[f"{_method} {_path}"] = STAFF_ANY if _flag else STAFF

# The seller portal: sellers only (staff work in the back office), each on its own objects.
MATRIX.update(
    {
        "GET /sellers/{seller_id}": PUBLIC,  # the shop's page of a seller
        "GET /seller": PORTAL,
        "GET /seller/": PORTAL,
        "GET /seller/offers": PORTAL,
        "POST /seller/offers/import": PORTAL,
        "GET /seller/offers/new": PORTAL,
        "POST /seller/offers": PORTAL,
        "GET /seller/offers/{offer_id}": PORTAL_OBJ,
        "POST /seller/offers/{offer_id}": PORTAL_OBJ,
        "GET /seller/orders": PORTAL,
        "POST /seller/orders/{part_id}/ship": PORTAL_OBJ,
        "GET /seller/stock": PORTAL,
        "POST /seller/stock/{offer_id}": PORTAL_OBJ,
        "GET /seller/statements": PORTAL,
        "GET /seller/returns": PORTAL,
        "GET /seller/returns/{return_id}": PORTAL_OBJ,
    }
)

# Well-formed bodies for rows whose refusal must come from the service, not the parser (see the
# module's docstring), and the query strings some endpoints need.
BODIES: dict[str, dict[str, Any]] = {
    "PATCH /api/cart/items/{line_id}": {"json": {"quantity": 1}},
    "POST /api/orders/{order_id}/returns": {
        "json": {"lines": [{"order_line_id": "{order_line_id}", "quantity": 99}], "reason": "x"}
    },
    "POST /api/seller/orders/{order_part_id}/shipments": {"json": {"carrier": "no-such"}},
    "PATCH /api/seller/offers/{offer_id}": {"json": {"quantity": 3}},
    "POST /api/guest-orders/{order_id}/returns": {
        "json": {"lines": [{"order_line_id": "{order_line_id}", "quantity": 99}], "reason": "x"}
    },
    "GET /api/orders/lookup": {"params": {"order_number": "{order_id}", "email": "x@example.com"}},
    "POST /seller/orders/{part_id}/ship": {"data": {"carrier": "no-such"}},
    "POST /seller/stock/{offer_id}": {"data": {"available": "3"}},
    "POST /seller/offers/{offer_id}": {"data": {"price": "-1.00"}},
}

# Requests that change the world, run after all the others in this order.
LAST = [
    "DELETE /api/cart/items/{line_id}",
    "DELETE /api/cart",
    "DELETE /api/me/wishlist/{product_id}",
    "DELETE /api/me/addresses/{address_id}",
    "DELETE /api/reviews/{review_id}",
    "DELETE /api/admin/commission-rules/{rule_id}",
    "POST /api/admin/returns/{return_id}/{decision}",
    "POST /api/admin/flash-sales/{sale_id}/end",
    "POST /api/admin/products/{product_id}/archive",
    "POST /api/auth/logout",
    "POST /api/auth/logout-all",
]
FRESH_TOKENS = {"POST /api/auth/logout", "POST /api/auth/logout-all"}
# Within a row: those who must be refused first, the owner and staff last.
CALL_ORDER = ("anonymous", "other_customer", "other_seller", "customer", "seller", "staff")
FIXED = {"step": "pick", "decision": "approve"}


@pytest.fixture(autouse=True)
def sqlite_only(backend: str) -> None:
    """Before the app is made: who may do what does not depend on the storage backend."""
    if backend != "sqlite":
        pytest.skip("authorization does not depend on the storage backend")


def route_table(app: FastAPI) -> list[str]:
    found = []
    for route in routing.iter_route_contexts(app.routes):
        if not isinstance(route.original_route, routing.APIRoute):
            continue
        path = route.path_format
        if path.startswith(COVERED) or path in ("/admin", "/seller"):
            found += [f"{method} {path}" for method in sorted(route.methods)]
    return found


def test_every_route_has_a_row(app_routes: list[str]) -> None:
    missing = [r for r in app_routes if r not in MATRIX]
    gone = [r for r in MATRIX if r not in app_routes]
    assert not missing, f"routes without a row in the authorization matrix: {missing}"
    assert not gone, f"rows of the authorization matrix for routes that are gone: {gone}"
    assert not [r for r in [*BODIES, *LAST] if r not in MATRIX]


@pytest.fixture
def app_routes(app: FastAPI) -> list[str]:
    return route_table(app)


@dataclass(frozen=True, slots=True)
class Call:
    row: str
    actor: str
    status: int
    expected: str
    body: str


def _fill(template: Any, params: dict[str, str]) -> Any:
    if isinstance(template, str):
        return re.sub(
            r"\{(\w+)\}", lambda m: params.get(m[1], FIXED.get(m[1], "missing")), template
        )
    if isinstance(template, dict):
        return {k: _fill(v, params) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, params) for v in template]
    return template


def _passes(status: int, expected: str) -> bool:
    if expected in ("ok", "any"):
        refused = {401, 403, 405} | ({404} if expected == "ok" else set())
        return status < 500 and status not in refused
    return status == int(expected)


async def _token_for(app: FastAPI, token: str | None) -> str | None:
    """A second token of the caller behind ``token`` (for the logout rows)."""
    if token is None:
        return None
    runtime = runtime_of(app)
    async with runtime.db.transaction() as uow:
        check = await identity.check_token(uow, token)
        assert check.user is not None
        return await identity.issue_token(uow, check.user.id, 600)


async def _call(
    client: httpx.AsyncClient, app: FastAPI, world: World, row: str, actor: str
) -> httpx.Response:
    method, template = row.split(" ", 1)
    url = _fill(template, world.params)
    token = world.actors[actor].token
    if row in FRESH_TOKENS:
        token = await _token_for(app, token)
    extra: dict[str, Any] = dict(_fill(BODIES.get(row, {}), world.params))
    headers: dict[str, str] = {}
    if template.startswith("/api/"):
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if "/guest-orders/" in template:
            headers["X-Order-Token"] = "forged-token"
        if method not in ("GET", "DELETE") and not extra:
            extra = {"json": {}}
    else:
        # A browser on the pages: its session cookie, and a form carrying the CSRF token that
        # a page of the same session would give it (refusals must be for who, not for CSRF).
        secret = runtime_of(app).settings.secret_key
        cookies = {CSRF_COOKIE: "browser-secret"}
        if token:
            cookies[COOKIE_NAME] = token
        headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if method == "POST":
            form = dict(extra.pop("data", {}))
            form[CSRF_FIELD] = make_csrf_token(secret, "browser-secret", token)
            extra["data"] = form
    return await client.request(method, url, headers=headers, **extra)


async def test_who_may_do_what(client: httpx.AsyncClient, app: FastAPI) -> None:
    world = await build_world(client, app)
    rows = [r for r in route_table(app) if r not in LAST] + LAST
    wrong: list[Call] = []
    for row in rows:
        if row not in MATRIX:
            continue  # test_every_route_has_a_row names it
        expected = dict(zip(ACTORS, MATRIX[row], strict=True))
        for actor in CALL_ORDER:
            r = await _call(client, app, world, row, actor)
            if not _passes(r.status_code, expected[actor]):
                wrong.append(Call(row, actor, r.status_code, expected[actor], r.text[:200]))
    assert not wrong, "\n".join(
        f"{c.row} as {c.actor}: {c.status}, expected {c.expected}: {c.body}" for c in wrong
    )
