"""What the OpenAPI document says about errors, callers, headers and limits, and the answers
that back it: 405 with the resource's methods in ``Allow``, NUL characters refused anywhere."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from mercato.app import create_app
from mercato.cart.schemas import AddItemIn
from mercato.search.service import MAX_QUERY_CHARS
from mercato.settings import Settings

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    app = create_app(Settings(database_url="sqlite+aiosqlite:///:memory:"), check_migrations=False)
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, ops in document["paths"].items() for m, op in ops.items()]


def test_every_problem_an_operation_answers_is_problem_json(document: dict[str, Any]) -> None:
    assert "HTTPValidationError" not in document["components"]["schemas"]
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    for method, path, op in operations(document):
        errors = {int(s): r for s, r in op["responses"].items() if int(s) >= 400}
        for status, answer in errors.items():
            assert answer["content"] == PROBLEM, (method, path, status)
        takes_input = bool(op.get("parameters") or op.get("requestBody"))
        assert (422 in errors) == takes_input, (method, path)
        if "{" in path:
            assert 404 in errors, (method, path)
        if op.get("security") and {} not in op["security"]:
            assert 401 in errors, (method, path)
            assert "WWW-Authenticate" in errors[401]["headers"]
        if path.startswith("/api/admin/"):
            assert 403 in errors, (method, path)


def test_what_services_refuse_is_declared(document: dict[str, Any]) -> None:
    def statuses(method: str, path: str) -> set[str]:
        return set(document["paths"][path][method]["responses"])

    assert {"401", "429"} <= statuses("post", "/api/auth/login")
    assert {"400", "402", "409", "429"} <= statuses("post", "/api/checkout")
    assert {"400", "409"} <= statuses("post", "/api/cart/items")
    assert "409" in statuses("post", "/api/admin/products")
    assert "400" in statuses("get", "/api/orders")  # a cursor it did not issue
    assert (
        "Retry-After" in document["paths"]["/api/auth/login"]["post"]["responses"]["429"]["headers"]
    )


def test_guests_use_the_cart_and_a_product_page_and_check_out_without_a_token(
    document: dict[str, Any],
) -> None:
    for method, path in [
        ("get", "/api/cart"),
        ("delete", "/api/cart"),
        ("post", "/api/cart/items"),
        ("post", "/api/checkout"),  # a guest: a cart token and an e-mail
    ]:
        assert {} in document["paths"][path][method]["security"], (method, path)
    assert {} in document["paths"]["/api/products/{product_id}"]["get"]["security"]
    assert {} not in document["paths"]["/api/me"]["get"]["security"]
    assert {} not in document["paths"]["/api/orders"]["get"]["security"]


def test_the_checkout_declares_its_idempotency_key(document: dict[str, Any]) -> None:
    [key] = [
        p
        for p in document["paths"]["/api/checkout"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert key["in"] == "header" and key["required"] is True
    assert key["schema"]["maxLength"] == 255


def test_the_search_states_its_real_length_limit(document: dict[str, Any]) -> None:
    for path in ("/api/search", "/api/search/suggest"):
        [q] = [p for p in document["paths"][path]["get"]["parameters"] if p["name"] == "q"]
        assert q["schema"]["maxLength"] == MAX_QUERY_CHARS == 200


def test_an_integer_may_be_written_as_a_whole_float() -> None:
    # JSON Schema's "integer" includes 2.0; strings and fractions stay refused.
    assert AddItemIn.model_validate({"variant_id": "var_x", "quantity": 2.0}).quantity == 2
    for bad in ("2", 2.5, True):
        with pytest.raises(ValidationError):
            AddItemIn.model_validate({"variant_id": "var_x", "quantity": bad})


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/api/cart", "DELETE, GET"),
        ("PUT", "/api/admin/webhooks/whk_1", "DELETE, GET, PATCH"),
        # A literal path is its own resource, even where a template would also fit it.
        ("OPTIONS", "/api/checkout/quote", "POST"),
        ("GET", "/api/admin/inventory/adjust", None),  # GET is the variant "adjust"'s stock
    ],
)
async def test_405_names_every_method_of_the_resource(
    client: httpx.AsyncClient, method: str, path: str, allow: str | None
) -> None:
    r = await client.request(method, path)
    if allow is None:
        assert r.status_code != 405
        return
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.headers["content-type"] == "application/problem+json"


async def test_nul_characters_are_refused_wherever_they_are(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    """On PostgreSQL a NUL in a looked-up id was a 500: text can never hold one."""
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("GET", "/api/products/prd%00x", {}, "path"),
        ("GET", "/api/admin/inventory/SKU%00", {"headers": staff_headers}, "path"),
        ("GET", "/api/search?q=kettle%00", {}, "q"),
        ("GET", "/api/admin/orders?email=a%00b", {"headers": staff_headers}, "email"),
        (
            "POST",
            "/api/cart/items",
            {"json": {"variant_id": "var\x00", "quantity": 1}},
            "variant_id",
        ),
        (
            "POST",
            "/api/admin/inventory/reservations",
            {
                "json": {"owner": "o", "lines": [{"sku": "a\x00", "quantity": 1}]},
                "headers": staff_headers,
            },
            "lines.0.sku",
        ),
    ]
    for method, url, options, field in cases:
        r = await client.request(method, url, **options)
        assert r.status_code == 422, (url, r.text)
        body = r.json()
        assert body["code"] == "nul_character"
        assert body["errors"][0]["field"] == field
    # An escaped backslash before "u0000" is text, not a NUL.
    r = await client.post("/api/cart/items", json={"variant_id": "var\\u0000", "quantity": 1})
    assert r.json()["code"] != "nul_character"


async def test_a_problem_names_the_request_path_as_a_uri_reference(
    client: httpx.AsyncClient,
) -> None:
    r = await client.get("/api/products/caf%C3%A9 x")
    assert r.status_code == 404
    assert r.json()["instance"] == "/api/products/caf%C3%A9%20x"
