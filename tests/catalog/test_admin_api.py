"""Staff changes through the API: CRUD, role checks, and every kind of bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.catalog.conftest import SmallCatalog, event_types, row_counts

PROBLEM = "application/problem+json"


def assert_problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["code"] == code
    assert body["status"] == status
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])] + [body.get("field")]
        assert field in fields, body


def product_body(cat: SmallCatalog, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Acme Classic Kettle 1.7 L",
        "description": "Boils a litre in two minutes.",
        "category_id": cat.kettles,
        "brand_id": cat.acme,
        "status": "active",
        "attributes": {"wattage": 2200, "colour": "steel", "cordless": True},
        "media": ["/static/img/kettles.svg"],
        "variants": [
            {
                "sku": "ACME-KET-1",
                "price": "39.99",
                "currency": "EUR",
                "compare_at_price": "49.99",
                "options": {"colour": "steel"},
                "weight_grams": 1200,
            },
            {"sku": "ACME-KET-2", "price": "42.50", "options": {"colour": "black"}},
        ],
    }
    body.update(overrides)
    return body


async def test_staff_crud_round_trip(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    small_catalog: SmallCatalog,
) -> None:
    r = await client.post(
        "/api/admin/products", json=product_body(small_catalog), headers=staff_headers
    )
    assert r.status_code == 201, r.text
    product = r.json()
    pid = product["id"]
    assert pid.startswith("prd_")
    assert product["min_price"] == "39.99" and product["max_price"] == "42.50"
    assert product["attributes"] == {"wattage": "2200", "colour": "steel", "cordless": "true"}
    assert [v["sku"] for v in product["variants"]] == ["ACME-KET-1", "ACME-KET-2"]
    assert product["variants"][0]["compare_at_price"] == "49.99"
    assert product["variants"][1]["currency"] == "EUR"
    assert product["category"]["path"] == "home-kitchen/kettles"
    assert product["brand"]["slug"] == "acme"

    r = await client.patch(
        f"/api/admin/products/{pid}",
        json={"title": "Acme Kettle Pro", "brand_id": None},
        headers=staff_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Acme Kettle Pro"
    assert r.json()["brand"] is None

    r = await client.post(
        f"/api/admin/products/{pid}/variants",
        json={"sku": "ACME-KET-3", "price": "29.00", "options": {"colour": "white"}},
        headers=staff_headers,
    )
    assert r.status_code == 201, r.text
    variant = r.json()
    assert variant["price"] == "29.00" and variant["position"] == 2

    r = await client.patch(
        f"/api/admin/variants/{variant['id']}",
        json={"price": "31.10", "compare_at_price": None, "active": True},
        headers=staff_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["price"] == "31.10"

    public = (await client.get(f"/api/products/{pid}")).json()
    assert public["min_price"] == "31.10" and public["max_price"] == "42.50"
    assert len(public["variants"]) == 3

    r = await client.post(f"/api/admin/products/{pid}/archive", headers=staff_headers)
    assert r.status_code == 200 and r.json()["status"] == "archived"
    assert_problem(await client.get(f"/api/products/{pid}"), 404, "not_found")
    r = await client.get(f"/api/products/{pid}", headers=staff_headers)
    assert r.status_code == 200 and r.json()["status"] == "archived"

    assert await event_types(app, pid) == [
        "ProductCreated",
        "ProductUpdated",
        "ProductUpdated",
        "ProductArchived",
    ]
    all_types = await event_types(app)
    assert all_types.count("VariantCreated") == 3
    assert all_types.count("VariantUpdated") == 1


async def test_categories_and_brands(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    r = await client.post("/api/admin/categories", json={"name": "Sports"}, headers=staff_headers)
    assert r.status_code == 201, r.text
    sports = r.json()
    assert (sports["slug"], sports["path"], sports["depth"]) == ("sports", "sports", 0)
    r = await client.post(
        "/api/admin/categories",
        json={"name": "Running", "parent_id": sports["id"]},
        headers=staff_headers,
    )
    running = r.json()
    assert running["path"] == "sports/running"
    r = await client.post(
        "/api/admin/categories",
        json={"name": "Running shoes", "parent_id": running["id"]},
        headers=staff_headers,
    )
    assert r.json()["path"] == "sports/running/running-shoes"
    r = await client.post("/api/admin/categories", json={"name": "Outdoor"}, headers=staff_headers)
    outdoor = r.json()

    # Moving a subtree rewrites every path below it.
    r = await client.patch(
        f"/api/admin/categories/{running['id']}",
        json={"parent_id": outdoor["id"], "slug": "trail"},
        headers=staff_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "outdoor/trail"
    tree = (await client.get("/api/categories")).json()["items"]
    by_slug = {n["slug"]: n for n in tree}
    assert by_slug["sports"]["children"] == []
    trail = by_slug["outdoor"]["children"][0]
    assert trail["slug"] == "trail"
    assert trail["children"][0]["path"] == "outdoor/trail/running-shoes"
    assert trail["children"][0]["depth"] == 2

    detail = (await client.get("/api/categories/running-shoes")).json()
    assert [a["slug"] for a in detail["ancestors"]] == ["outdoor", "trail"]
    assert_problem(await client.get("/api/categories/nope"), 404, "not_found")

    # A category cannot move below itself.
    before = await row_counts(app)
    r = await client.patch(
        f"/api/admin/categories/{outdoor['id']}",
        json={"parent_id": trail["id"]},
        headers=staff_headers,
    )
    assert_problem(r, 422, "invalid_parent", "parent_id")
    r = await client.post("/api/admin/categories", json={"name": "Sports"}, headers=staff_headers)
    assert_problem(r, 409, "slug_taken", "slug")
    r = await client.post(
        "/api/admin/categories",
        json={"name": "Orphan", "parent_id": "cat_nope"},
        headers=staff_headers,
    )
    assert_problem(r, 422, "unknown_category", "parent_id")
    assert await row_counts(app) == before

    r = await client.post("/api/admin/brands", json={"name": "Nordhaven"}, headers=staff_headers)
    assert r.status_code == 201 and r.json()["slug"] == "nordhaven"
    assert_problem(
        await client.post("/api/admin/brands", json={"name": "Nordhaven"}, headers=staff_headers),
        409,
        "slug_taken",
    )
    brands = (await client.get("/api/brands")).json()["items"]
    assert [b["name"] for b in brands] == ["Nordhaven"]
    types = await event_types(app)
    assert types.count("CategoryCreated") == 4
    assert types.count("CategoryUpdated") == 1
    assert types.count("BrandCreated") == 1


ADMIN_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("POST", "/api/admin/categories", {"name": "X"}),
    ("PATCH", "/api/admin/categories/cat_x", {"name": "X"}),
    ("POST", "/api/admin/brands", {"name": "X"}),
    ("POST", "/api/admin/products", {"title": "X", "category_id": "cat_x"}),
    ("GET", "/api/admin/products/prd_x", None),
    ("PATCH", "/api/admin/products/prd_x", {"title": "X"}),
    ("POST", "/api/admin/products/prd_x/archive", None),
    ("POST", "/api/admin/products/prd_x/variants", {"sku": "X", "price": "1.00"}),
    ("PATCH", "/api/admin/variants/var_x", {"price": "1.00"}),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_CALLS)
async def test_admin_routes_refuse_anonymous_and_customers(
    app: FastAPI,
    client: httpx.AsyncClient,
    customer_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    before = await row_counts(app)
    r = await client.request(method, path, json=body)
    assert_problem(r, 401, "unauthorized")
    r = await client.request(method, path, json=body, headers=customer_headers)
    assert_problem(r, 403, "forbidden")
    assert await row_counts(app) == before


def _set(path: str, value: Any) -> Any:
    """A mutation of the valid product body: set a dotted path (list indexes as numbers)."""

    def mutate(body: dict[str, Any]) -> dict[str, Any]:
        target: Any = body
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if key.isdigit() else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
        return body

    return mutate


_DELETE = object()

BAD_PRODUCTS = [
    # (case, mutation, status, code, field)
    ("title is a number", _set("title", 123), 422, "validation_error", "title"),
    ("title missing", _set("title", _DELETE), 422, "validation_error", "title"),
    ("title too long", _set("title", "x" * 201), 422, "validation_error", "title"),
    (
        "description too long",
        _set("description", "x" * 20_001),
        422,
        "validation_error",
        "description",
    ),
    ("unknown status", _set("status", "gone"), 422, "validation_error", "status"),
    (
        "weight as text",
        _set("variants.0.weight_grams", "heavy"),
        422,
        "validation_error",
        "variants.0.weight_grams",
    ),
    (
        "negative weight",
        _set("variants.0.weight_grams", -1),
        422,
        "validation_error",
        "variants.0.weight_grams",
    ),
    (
        "price as float",
        _set("variants.0.price", 19.99),
        422,
        "validation_error",
        "variants.0.price",
    ),
    ("price as integer", _set("variants.1.price", 20), 422, "validation_error", "variants.1.price"),
    (
        "negative price",
        _set("variants.0.price", "-1.00"),
        422,
        "validation_error",
        "variants.0.price",
    ),
    (
        "sub-cent price",
        _set("variants.0.price", "1.999"),
        422,
        "validation_error",
        "variants.0.price",
    ),
    (
        "compare-at as float",
        _set("variants.0.compare_at_price", 49.5),
        422,
        "validation_error",
        "variants.0.compare_at_price",
    ),
    ("sku too long", _set("variants.0.sku", "S" * 65), 422, "validation_error", "variants.0.sku"),
    ("sku with spaces", _set("variants.0.sku", "A B"), 422, "validation_error", "variants.0.sku"),
    ("attribute value a list", _set("attributes.colour", ["red"]), 422, "validation_error", None),
    ("media not a url", _set("media", ["javascript:alert(1)"]), 422, "validation_error", "media.0"),
    ("unknown field", _set("price_cents", 1999), 422, "validation_error", "price_cents"),
    ("unknown category", _set("category_id", "cat_nope"), 422, "unknown_category", "category_id"),
    ("unknown brand", _set("brand_id", "brd_nope"), 422, "unknown_brand", "brand_id"),
    (
        "mixed currencies",
        _set("variants.1.currency", "USD"),
        422,
        "currency_mismatch",
        "variants.1.currency",
    ),
    ("bad currency code", _set("currency", "euro"), 422, "validation_error", "currency"),
    ("same sku twice", _set("variants.1.sku", "ACME-KET-1"), 409, "sku_taken", "variants.1.sku"),
    ("existing sku", _set("variants.1.sku", "EXISTING-1"), 409, "sku_taken", "variants.1.sku"),
]


@pytest.mark.parametrize(
    ("mutation", "status", "code", "field"),
    [case[1:] for case in BAD_PRODUCTS],
    ids=[case[0] for case in BAD_PRODUCTS],
)
async def test_bad_product_input_writes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    small_catalog: SmallCatalog,
    mutation: Any,
    status: int,
    code: str,
    field: str | None,
) -> None:
    existing = product_body(small_catalog, variants=[{"sku": "EXISTING-1", "price": "1.00"}])
    r = await client.post("/api/admin/products", json=existing, headers=staff_headers)
    assert r.status_code == 201
    before = await row_counts(app)
    r = await client.post(
        "/api/admin/products", json=mutation(product_body(small_catalog)), headers=staff_headers
    )
    assert_problem(r, status, code, field)
    assert await row_counts(app) == before


async def test_malformed_json_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    before = await row_counts(app)
    for path in ("/api/admin/products", "/api/admin/categories", "/api/admin/brands"):
        r = await client.post(
            path,
            content=b'{"title": "Kettle", ',
            headers={**staff_headers, "content-type": "application/json"},
        )
        assert_problem(r, 400, "malformed_json")
    r = await client.post("/api/admin/products", json=[1, 2], headers=staff_headers)
    assert_problem(r, 422, "validation_error")
    r = await client.post("/api/admin/categories", json={"name": "n" * 121}, headers=staff_headers)
    assert_problem(r, 422, "validation_error", "name")
    r = await client.post(
        "/api/admin/categories", json={"name": "Ok", "slug": "Not A Slug"}, headers=staff_headers
    )
    assert_problem(r, 422, "validation_error", "slug")
    r = await client.post("/api/admin/brands", json={"name": ""}, headers=staff_headers)
    assert_problem(r, 422, "validation_error", "name")
    r = await client.patch(
        "/api/admin/categories/cat_nope", json={"name": "X"}, headers=staff_headers
    )
    assert_problem(r, 404, "not_found")
    r = await client.get("/api/admin/products/prd_nope", headers=staff_headers)
    assert_problem(r, 404, "not_found")
    assert await row_counts(app) == before


async def test_bad_variant_and_patch_input_writes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    small_catalog: SmallCatalog,
) -> None:
    r = await client.post(
        "/api/admin/products", json=product_body(small_catalog), headers=staff_headers
    )
    product = r.json()
    pid, vid = product["id"], product["variants"][0]["id"]
    before = await row_counts(app)
    cases: list[tuple[str, str, dict[str, Any], int, str, str | None]] = [
        (
            "POST",
            f"/api/admin/products/{pid}/variants",
            {"sku": "N-1", "price": 5.5},
            422,
            "validation_error",
            "price",
        ),
        (
            "POST",
            f"/api/admin/products/{pid}/variants",
            {"sku": "N-1", "price": "-5"},
            422,
            "validation_error",
            "price",
        ),
        (
            "POST",
            f"/api/admin/products/{pid}/variants",
            {"sku": "ACME-KET-2", "price": "5"},
            409,
            "sku_taken",
            "sku",
        ),
        (
            "POST",
            f"/api/admin/products/{pid}/variants",
            {"sku": "N-1", "price": "5", "currency": "USD"},
            422,
            "currency_mismatch",
            "currency",
        ),
        (
            "POST",
            "/api/admin/products/prd_nope/variants",
            {"sku": "N-1", "price": "5"},
            404,
            "not_found",
            None,
        ),
        (
            "PATCH",
            f"/api/admin/variants/{vid}",
            {"price": "1.001"},
            422,
            "validation_error",
            "price",
        ),
        ("PATCH", f"/api/admin/variants/{vid}", {"price": None}, 422, "validation_error", "price"),
        ("PATCH", f"/api/admin/variants/{vid}", {"sku": "ACME-KET-2"}, 409, "sku_taken", "sku"),
        ("PATCH", "/api/admin/variants/var_nope", {"price": "1.00"}, 404, "not_found", None),
        ("PATCH", f"/api/admin/products/{pid}", {"title": None}, 422, "validation_error", "title"),
        (
            "PATCH",
            f"/api/admin/products/{pid}",
            {"title": "t" * 201},
            422,
            "validation_error",
            "title",
        ),
        (
            "PATCH",
            f"/api/admin/products/{pid}",
            {"category_id": "cat_nope"},
            422,
            "unknown_category",
            "category_id",
        ),
        (
            "PATCH",
            f"/api/admin/products/{pid}",
            {"status": "deleted"},
            422,
            "validation_error",
            "status",
        ),
        (
            "PATCH",
            f"/api/admin/products/{pid}",
            {"currency": "USD"},
            422,
            "currency_mismatch",
            "currency",
        ),
        ("PATCH", "/api/admin/products/prd_nope", {"title": "X"}, 404, "not_found", None),
        ("POST", "/api/admin/products/prd_nope/archive", {}, 404, "not_found", None),
    ]
    for method, path, body, status, code, field in cases:
        r = await client.request(method, path, json=body, headers=staff_headers)
        assert_problem(r, status, code, field)
    assert await row_counts(app) == before


async def test_status_and_variant_changes_drive_the_listing(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    small_catalog: SmallCatalog,
) -> None:
    body = product_body(small_catalog, status="draft")
    product = (await client.post("/api/admin/products", json=body, headers=staff_headers)).json()
    pid = product["id"]

    async def listed() -> list[str]:
        return [p["id"] for p in (await client.get("/api/products")).json()["items"]]

    assert await listed() == []
    before = await row_counts(app)
    r = await client.patch(f"/api/admin/products/{pid}", json={}, headers=staff_headers)
    assert r.status_code == 200
    assert await row_counts(app) == before  # nothing changed, no event

    await client.patch(
        f"/api/admin/products/{pid}", json={"status": "active"}, headers=staff_headers
    )
    assert await listed() == [pid]
    # Deactivating the cheaper variant moves the "from" price; deactivating both unlists it.
    for i, variant in enumerate(product["variants"]):
        r = await client.patch(
            f"/api/admin/variants/{variant['id']}", json={"active": False}, headers=staff_headers
        )
        assert r.status_code == 200 and r.json()["active"] is False
        if i == 0:
            item = (await client.get("/api/products")).json()["items"][0]
            assert item["min_price"] == "42.50"
            assert [v["sku"] for v in item["variants"]] == ["ACME-KET-2"]
    assert await listed() == []
    staff_view = (await client.get(f"/api/admin/products/{pid}", headers=staff_headers)).json()
    assert staff_view["min_price"] is None
    assert [v["active"] for v in staff_view["variants"]] == [False, False]


async def test_staff_product_answers_say_which_variants_are_in_stock(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    small_catalog: SmallCatalog,
) -> None:
    """The catalog does not read stock: the inventory module tells it (a hook wired by
    ``modules.wire``), so a staff answer reflects what was received."""
    from mercato.inventory import service as inventory

    r = await client.post(
        "/api/admin/products", json=product_body(small_catalog), headers=staff_headers
    )
    assert r.status_code == 201, r.text
    product_id = r.json()["id"]
    runtime = app.state.runtime
    async with runtime.db.transaction() as uow:
        await inventory.create_warehouse(uow, code="BER", name="Berlin", countries=["DE"])
        await inventory.receive(uow, "ACME-KET-1", "BER", 3)
    r = await client.get(f"/api/admin/products/{product_id}", headers=staff_headers)
    assert r.status_code == 200, r.text
    by_sku = {v["sku"]: v for v in r.json()["variants"]}
    assert by_sku["ACME-KET-1"]["in_stock"] is True
    assert by_sku["ACME-KET-1"]["stock_hint"] == "Only 3 left"
    assert by_sku["ACME-KET-2"]["in_stock"] is False
    assert r.json()["in_stock"] is True
