"""The staff payments API: an intent with its operations, and the sandbox ledger."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from mercato.payments import service
from mercato.runtime import Runtime
from tests.payments.conftest import CARD_NUMBER_IN_TEXT

PROBLEM = "application/problem+json"


async def _paid_intent(app: FastAPI) -> str:
    runtime: Runtime = app.state.runtime
    provider = service.get_provider(runtime)
    auth = await service.authorize(
        runtime.db,
        provider,
        owner="ord_1",
        amount=12_345,
        currency="EUR",
        token="tok_mastercard",
        idempotency_key="auth-1",
    )
    await service.capture(runtime.db, provider, auth.intent_id, None, "cap-1")
    await service.refund(runtime.db, provider, auth.intent_id, 345, "ref-1")
    return auth.intent_id


async def test_staff_sees_an_intent_with_its_operations(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    intent_id = await _paid_intent(app)
    r = await client.get(f"/api/admin/payments/{intent_id}", headers=staff_headers)
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "partially_refunded"
    assert (body["amount_captured"], body["amount_refunded"], body["net_paid"]) == (
        "123.45",
        "3.45",
        "120.00",
    )
    assert (body["card_brand"], body["card_last4"]) == ("mastercard", "4444")
    assert [(e["operation"], e["outcome"], e["amount"]) for e in body["events"]] == [
        ("authorize", "succeeded", "123.45"),
        ("capture", "succeeded", "123.45"),
        ("refund", "succeeded", "3.45"),
    ]
    assert "token" not in body
    assert not CARD_NUMBER_IN_TEXT.search(r.text)


async def test_staff_sees_the_sandbox_ledger(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    await _paid_intent(app)
    r = await client.get("/api/admin/payments/sandbox/charges", headers=staff_headers)
    assert r.status_code == 200
    [charge] = r.json()["charges"]
    assert charge["id"].startswith("ch_")
    assert (charge["amount_captured"], charge["amount_refunded"], charge["status"]) == (
        "123.45",
        "3.45",
        "partially_refunded",
    )
    assert (charge["token"], charge["card_last4"]) == ("tok_mastercard", "4444")


async def test_unknown_intent_is_a_404_problem(
    client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    r = await client.get("/api/admin/payments/pi_nothing", headers=staff_headers)
    assert r.status_code == 404
    assert r.headers["content-type"] == PROBLEM
    assert r.json()["code"] == "not_found"


async def test_only_staff_may_look(
    app: FastAPI, client: httpx.AsyncClient, customer_headers: dict[str, str]
) -> None:
    intent_id = await _paid_intent(app)
    for path in (f"/api/admin/payments/{intent_id}", "/api/admin/payments/sandbox/charges"):
        r = await client.get(path, headers=customer_headers)
        assert r.status_code == 403
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "forbidden"
        r = await client.get(path)
        assert r.status_code == 401
        assert r.headers["content-type"] == PROBLEM
        assert r.json()["code"] == "unauthorized"
