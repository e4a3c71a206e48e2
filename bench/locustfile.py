"""Load-test your own Mercato deployment with Locust: the shopper journey of ``bench.mixed``
(home, search, a category, a product page, add to cart, one journey in five checks out).

Locust is not a dependency of Mercato; install it where you run the load::

    pip install locust
    locust -f bench/locustfile.py --host https://shop.example.com

Shoppers browse as guests. To also add to carts and check out, give customer bearer tokens
(``POST /api/auth/token`` for test customers you created), one per line, in the file named by
``MERCATO_LOCUST_TOKENS``; each simulated shopper takes one in turn. Checkouts place real
orders with the payment token ``MERCATO_LOCUST_PAYMENT_TOKEN`` (default ``tok_visa``, the
sandbox provider's approving card): point it only at a shop whose provider is the sandbox.
"""

from __future__ import annotations

import itertools
import os
import random
import uuid
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

HTML = {"accept": "text/html"}
CHECKOUT_EVERY = 5
ADDRESS = {
    "name": "Load Test",
    "line1": "Teststrasse 1",
    "city": "Berlin",
    "postal_code": "10115",
    "country": os.environ.get("MERCATO_LOCUST_COUNTRY", "DE"),
}

_tokens_file = os.environ.get("MERCATO_LOCUST_TOKENS")
_tokens = Path(_tokens_file).read_text().split() if _tokens_file else []
_next_token = itertools.cycle(_tokens) if _tokens else None
_catalog: dict[str, list[Any]] = {"products": [], "words": [], "categories": []}


@events.test_start.add_listener
def _discover(environment: Any, **_: Any) -> None:
    """What shoppers will ask for: products, words of their titles, categories."""
    import httpx

    with httpx.Client(base_url=environment.host, timeout=30) as client:
        page = client.get("/api/products", params={"limit": 100}).json()
        categories = client.get("/api/categories").json()
    items = page.get("items", [])
    _catalog["products"] = [(p["id"], p["variants"][0]["id"]) for p in items if p.get("variants")]
    _catalog["words"] = sorted(
        {w.lower() for p in items for w in p["title"].split() if len(w) > 3}
    ) or ["shirt"]
    flat = categories if isinstance(categories, list) else categories.get("items", [])
    _catalog["categories"] = [c["path"] for c in flat if isinstance(c, dict) and c.get("path")]


class Shopper(HttpUser):
    wait_time = between(1, 5)  # a person reads a page before the next

    def on_start(self) -> None:
        self.token = next(_next_token) if _next_token is not None else None
        self.journeys = 0

    @task
    def journey(self) -> None:
        self.journeys += 1
        self.client.get("/", headers=HTML, name="home")
        self.client.get(
            "/search", params={"q": random.choice(_catalog["words"])}, headers=HTML, name="search"
        )
        if _catalog["categories"]:
            self.client.get(
                f"/c/{random.choice(_catalog['categories'])}", headers=HTML, name="category"
            )
        if not _catalog["products"]:
            return
        product, variant = random.choice(_catalog["products"])
        self.client.get(f"/p/{product}", headers=HTML, name="product")
        if self.token is None:
            return
        auth = {"Authorization": f"Bearer {self.token}"}
        self.client.post(
            "/api/cart/items",
            json={"variant_id": variant, "quantity": 1},
            headers=auth,
            name="cart",
        )
        if self.journeys % CHECKOUT_EVERY == 0:
            self.client.post(
                "/api/checkout",
                json={
                    "shipping_address": ADDRESS,
                    "shipping_method": "standard",
                    "payment_token": os.environ.get("MERCATO_LOCUST_PAYMENT_TOKEN", "tok_visa"),
                    "promo_code": None,
                },
                headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
                name="checkout",
            )
