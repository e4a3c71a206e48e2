"""The staff inventory API and the public availability answer."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import Database
from mercato.runtime import Runtime
from tests.factories import make_product
from tests.inventory.conftest import create_warehouses, snapshot

PROBLEM = "application/problem+json"
ADMIN = "/api/admin/inventory"


def assert_problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> Any:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["code"] == code, body
    if field is not None:
        assert field in [e["field"] for e in body.get("errors", [])], body
    return body


def app_db(app: FastAPI) -> Database:
    runtime: Runtime = app.state.runtime
    return runtime.db


@pytest.fixture
async def shop(app: FastAPI) -> dict[str, str]:
    """Three warehouses and a kettle with two SKUs (plus an archived product)."""
    db = app_db(app)
    await create_warehouses(db)
    async with db.transaction() as session:
        _, (steel, black) = await make_product(
            session, variants=[{"sku": "KET-STEEL"}, {"sku": "KET-BLACK"}]
        )
        _, (old,) = await make_product(
            session, title="Old kettle", variants=[{"sku": "KET-OLD"}], status="archived"
        )
    return {"steel": steel, "black": black, "old": old}


async def test_receive_adjust_and_read_stock(
    client: httpx.AsyncClient, staff_headers: dict[str, str], shop: dict[str, str]
) -> None:
    r = await client.post(
        f"{ADMIN}/receive",
        json={"sku": "KET-STEEL", "warehouse": "BER", "quantity": 12, "reference": "PO-7"},
        headers=staff_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["stock"] | {"updated_at": None} == {
        "warehouse": "BER",
        "warehouse_id": r.json()["stock"]["warehouse_id"],
        "on_hand": 12,
        "reserved": 0,
        "available": 12,
        "updated_at": None,
    }
    r = await client.post(
        f"{ADMIN}/receive",
        json={"sku": "KET-STEEL", "warehouse": "lys", "quantity": 3},
        headers=staff_headers,
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        f"{ADMIN}/adjust",
        json={"sku": "KET-STEEL", "warehouse": "BER", "delta": -2, "reason": "dropped"},
        headers=staff_headers,
    )
    assert r.status_code == 200, r.text
    assert r.json()["stock"]["on_hand"] == 10

    r = await client.post(
        f"{ADMIN}/reservations",
        json={"owner": "phone-1", "lines": [{"sku": "KET-STEEL", "quantity": 4}]},
        headers=staff_headers,
    )
    assert r.status_code == 201, r.text
    assert [(x["warehouse"], x["quantity"]) for x in r.json()] == [("BER", 4)]

    r = await client.get(f"{ADMIN}/KET-STEEL", headers=staff_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["on_hand"], body["reserved"], body["available"]) == (13, 4, 9)
    assert [(w["warehouse"], w["on_hand"], w["reserved"]) for w in body["warehouses"]] == [
        ("BER", 10, 4),
        ("LYS", 3, 0),
    ]
    assert [x["owner"] for x in body["reservations"]] == ["phone-1"]

    r = await client.get(f"{ADMIN}/reservations", headers=staff_headers)
    assert [x["owner"] for x in r.json()] == ["phone-1"]
    r = await client.post(f"{ADMIN}/reservations/phone-1/commit", headers=staff_headers)
    assert [x["state"] for x in r.json()] == ["committed"]
    r = await client.post(f"{ADMIN}/reservations/phone-1/commit", headers=staff_headers)
    assert r.json() == []
    r = await client.get(f"{ADMIN}/reservations?state=committed", headers=staff_headers)
    assert [x["quantity"] for x in r.json()] == [4]

    r = await client.get(f"{ADMIN}/check", headers=staff_headers)
    assert r.status_code == 200
    assert r.json() | {"rule": ""} == {"ok": True, "rule": "", "stock_rows": 2, "differences": []}


async def test_warehouses(client: httpx.AsyncClient, staff_headers: dict[str, str]) -> None:
    r = await client.post(
        f"{ADMIN}/warehouses",
        json={"code": "mad", "name": "Madrid", "countries": ["es", "PT"], "region": "Iberia"},
        headers=staff_headers,
    )
    assert r.status_code == 201, r.text
    assert r.json() | {"id": ""} == {
        "id": "",
        "code": "MAD",
        "name": "Madrid",
        "countries": ["ES", "PT"],
        "region": "Iberia",
        "active": True,
        "handling_days": 1,
    }
    r = await client.post(
        f"{ADMIN}/warehouses", json={"code": "MAD", "name": "Again"}, headers=staff_headers
    )
    assert_problem(r, 409, "warehouse_exists")
    r = await client.post(
        f"{ADMIN}/warehouses",
        json={"code": "X", "name": "Bad", "countries": ["Spain"]},
        headers=staff_headers,
    )
    body = assert_problem(r, 422, "validation_error")
    assert {e["field"] for e in body["errors"]} == {"code", "countries.0"}
    r = await client.get(f"{ADMIN}/warehouses", headers=staff_headers)
    assert [w["code"] for w in r.json()] == ["MAD"]


async def test_staff_only(
    client: httpx.AsyncClient, customer_headers: dict[str, str], shop: dict[str, str]
) -> None:
    calls = [
        ("POST", f"{ADMIN}/receive", {"sku": "KET-STEEL", "warehouse": "BER", "quantity": 1}),
        (
            "POST",
            f"{ADMIN}/adjust",
            {"sku": "KET-STEEL", "warehouse": "BER", "delta": 1, "reason": "x"},
        ),
        ("GET", f"{ADMIN}/KET-STEEL", None),
        ("GET", f"{ADMIN}/check", None),
        ("GET", f"{ADMIN}/reservations", None),
        ("GET", f"{ADMIN}/warehouses", None),
    ]
    for method, url, body in calls:
        r = await client.request(method, url, json=body, headers=customer_headers)
        assert_problem(r, 403, "forbidden")
        r = await client.request(method, url, json=body)
        assert_problem(r, 401, "unauthorized")


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"sku": "NOPE", "warehouse": "BER", "quantity": 1}, 422, "unknown_variant", "sku"),
        (
            {"sku": "KET-STEEL", "warehouse": "NOPE", "quantity": 1},
            422,
            "unknown_warehouse",
            "warehouse",
        ),
        (
            {"sku": "KET-STEEL", "warehouse": "BER", "quantity": 0},
            422,
            "validation_error",
            "quantity",
        ),
        (
            {"sku": "KET-STEEL", "warehouse": "BER", "quantity": -1},
            422,
            "validation_error",
            "quantity",
        ),
        (
            {"sku": "KET-STEEL", "warehouse": "BER", "quantity": 10**9},
            422,
            "validation_error",
            "quantity",
        ),
        (
            {"sku": "KET-STEEL", "warehouse": "BER", "quantity": 1.5},
            422,
            "validation_error",
            "quantity",
        ),
        (
            {"sku": "KET-STEEL", "warehouse": "BER", "quantity": "3"},
            422,
            "validation_error",
            "quantity",
        ),
        ({"sku": "KET-STEEL", "warehouse": "BER"}, 422, "validation_error", "quantity"),
    ],
)
async def test_bad_receive_writes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    shop: dict[str, str],
    body: dict[str, Any],
    status: int,
    code: str,
    field: str,
) -> None:
    before = await snapshot(app_db(app))
    r = await client.post(f"{ADMIN}/receive", json=body, headers=staff_headers)
    assert_problem(r, status, code, field)
    assert await snapshot(app_db(app)) == before


async def test_bad_adjustments_write_nothing(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str], shop: dict[str, str]
) -> None:
    await client.post(
        f"{ADMIN}/receive",
        json={"sku": "KET-STEEL", "warehouse": "BER", "quantity": 5},
        headers=staff_headers,
    )
    await client.post(
        f"{ADMIN}/reservations",
        json={"owner": "phone-1", "lines": [{"sku": "KET-STEEL", "quantity": 3}]},
        headers=staff_headers,
    )
    before = await snapshot(app_db(app))
    base = {"sku": "KET-STEEL", "warehouse": "BER", "reason": "count"}
    r = await client.post(f"{ADMIN}/adjust", json=base | {"delta": -3}, headers=staff_headers)
    body = assert_problem(r, 409, "insufficient_stock")
    assert body["available"] == 2
    r = await client.post(f"{ADMIN}/adjust", json=base | {"delta": 0}, headers=staff_headers)
    assert_problem(r, 422, "validation_error", "delta")
    r = await client.post(
        f"{ADMIN}/adjust", json=base | {"delta": 1, "reason": " "}, headers=staff_headers
    )
    assert_problem(r, 422, "validation_error", "reason")
    r = await client.post(f"{ADMIN}/adjust", json=base | {"delta": 10**6}, headers=staff_headers)
    assert_problem(r, 422, "validation_error", "delta")
    assert await snapshot(app_db(app)) == before


async def test_manual_reservation_problems(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str], shop: dict[str, str]
) -> None:
    for sku, code, units in (
        ("KET-STEEL", "BER", 2),
        ("KET-STEEL", "LDN", 5),
        ("KET-BLACK", "BER", 9),
        ("KET-OLD", "BER", 4),
    ):
        r = await client.post(
            f"{ADMIN}/receive",
            json={"sku": sku, "warehouse": code, "quantity": units},
            headers=staff_headers,
        )
        assert r.status_code == 200
    before = await snapshot(app_db(app))

    async def hold(**body: Any) -> httpx.Response:
        return await client.post(
            f"{ADMIN}/reservations", json={"owner": "phone-1"} | body, headers=staff_headers
        )

    r = await hold(
        lines=[{"sku": "KET-BLACK", "quantity": 2}, {"sku": "KET-STEEL", "quantity": 3}],
        country="DE",
    )
    body = assert_problem(r, 409, "out_of_stock")
    assert body["lines"] == [{"variant_id": shop["steel"], "requested": 3, "available": 2}]
    assert body["available"] == 2
    r = await hold(lines=[{"sku": "KET-OLD", "quantity": 1}])
    assert_problem(r, 409, "variant_unavailable")
    r = await hold(lines=[{"sku": "NOPE", "quantity": 1}])
    assert_problem(r, 422, "unknown_variant", "lines.0.sku")
    r = await hold(lines=[{"sku": "KET-STEEL", "quantity": 1}], warehouse="NOPE")
    assert_problem(r, 422, "unknown_warehouse", "warehouse")
    r = await hold(lines=[{"sku": "KET-STEEL", "quantity": 0}])
    assert_problem(r, 422, "validation_error", "lines.0.quantity")
    r = await hold(lines=[])
    assert_problem(r, 422, "validation_error", "lines")
    assert await snapshot(app_db(app)) == before

    r = await hold(lines=[{"sku": "KET-STEEL", "quantity": 6}], country="GB")
    body = assert_problem(r, 409, "out_of_stock")
    assert body["available"] == 5
    r = await hold(lines=[{"sku": "KET-STEEL", "quantity": 6}])
    assert r.status_code == 201, r.text
    assert sorted((x["warehouse"], x["quantity"]) for x in r.json()) == [("BER", 1), ("LDN", 5)]
    r = await client.post(
        f"{ADMIN}/reservations/phone-1/release",
        json={"reason": "customer hung up"},
        headers=staff_headers,
    )
    assert [x["state"] for x in r.json()] == ["released", "released"]


async def test_unknown_sku_is_404(
    client: httpx.AsyncClient, staff_headers: dict[str, str], shop: dict[str, str]
) -> None:
    r = await client.get(f"{ADMIN}/NOPE-SKU", headers=staff_headers)
    assert_problem(r, 404, "not_found")


async def test_public_availability_hides_exact_counts(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    shop: dict[str, str],
) -> None:
    await client.post(
        f"{ADMIN}/receive",
        json={"sku": "KET-STEEL", "warehouse": "BER", "quantity": 3},
        headers=staff_headers,
    )
    await client.post(
        f"{ADMIN}/receive",
        json={"sku": "KET-BLACK", "warehouse": "BER", "quantity": 40},
        headers=staff_headers,
    )
    ids = f"{shop['steel']},{shop['black']},{shop['old']}"
    r = await client.get(f"/api/inventory/availability?variant_ids={ids}")
    assert r.status_code == 200, r.text
    assert r.json() == {
        shop["steel"]: {
            "in_stock": True,
            "available_hint": "Only 3 left",
            "available_elsewhere": False,
        },
        shop["black"]: {"in_stock": True, "available_hint": None, "available_elsewhere": False},
        shop["old"]: {"in_stock": False, "available_hint": None, "available_elsewhere": False},
    }
    r = await client.get("/api/inventory/availability?variant_ids=" + ",".join(["v"] * 101))
    assert_problem(r, 422, "validation_error", "variant_ids")
    r = await client.get("/api/inventory/availability")
    assert_problem(r, 422, "validation_error", "variant_ids")
