"""The staff API: webhook endpoints (secret shown once, bad URLs and event types refused with
nothing written), delivery logs and retries, and the e-mail log with .eml downloads."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from mercato import worker
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.conftest import user_headers
from tests.notifications.conftest import Receiver, assert_problem, place_order, snapshot

WEBHOOKS = "/api/admin/webhooks"
EMAILS = "/api/admin/notifications/emails"


def rt(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def register(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, types: list[str] | None = None
) -> dict[str, Any]:
    response = await client.post(
        WEBHOOKS, json={"url": url, "event_types": types or ["OrderPlaced"]}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_register_list_change_and_delete_an_endpoint(
    client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    created = await register(
        client, staff_headers, "https://hooks.example/in", ["ShipmentCreated", "OrderPlaced"]
    )
    assert created["id"].startswith("whk_")
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 30
    assert created["event_types"] == ["OrderPlaced", "ShipmentCreated"]
    assert created["active"] is True

    listed = (await client.get(WEBHOOKS, headers=staff_headers)).json()
    assert [e["id"] for e in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0]  # shown once, on creation only
    assert "OrderPlaced" in listed["event_types"]
    one = (await client.get(f"{WEBHOOKS}/{created['id']}", headers=staff_headers)).json()
    assert "secret" not in one

    patched = await client.patch(
        f"{WEBHOOKS}/{created['id']}",
        json={"active": False, "event_types": ["RefundIssued"]},
        headers=staff_headers,
    )
    assert patched.status_code == 200
    assert patched.json()["active"] is False
    assert patched.json()["event_types"] == ["RefundIssued"]

    rotated = await client.post(f"{WEBHOOKS}/{created['id']}/rotate-secret", headers=staff_headers)
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]

    deleted = await client.delete(f"{WEBHOOKS}/{created['id']}", headers=staff_headers)
    assert deleted.status_code == 204
    gone = await client.get(f"{WEBHOOKS}/{created['id']}", headers=staff_headers)
    assert_problem(gone, 404, "not_found")


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/in",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://",
        "https:///path-only",
        "hooks.example/in",
        "",
        "http://user:pass@hooks.example/in",
        "http://hooks.example/in#frag",
        "http://hooks.example/in withspace",
        "http://hooks.example:99999/in",
        "https://hooks.example/" + "a" * 2000,
    ],
)
async def test_a_url_that_is_not_http_is_refused_and_nothing_is_written(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str], url: str
) -> None:
    before = await snapshot(rt(app).db)
    response = await client.post(
        WEBHOOKS, json={"url": url, "event_types": ["OrderPlaced"]}, headers=staff_headers
    )
    body = assert_problem(response, 422, "invalid_webhook_url")
    assert body["errors"][0]["field"] == "url"
    assert await snapshot(rt(app).db) == before


async def test_an_unknown_event_type_is_refused_and_nothing_is_written(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    before = await snapshot(rt(app).db)
    response = await client.post(
        WEBHOOKS,
        json={"url": "https://hooks.example/in", "event_types": ["OrderPlaced", "OrderEaten"]},
        headers=staff_headers,
    )
    body = assert_problem(response, 422, "unknown_event_type")
    assert "OrderEaten" in body["detail"]
    empty = await client.post(
        WEBHOOKS, json={"url": "https://hooks.example/in", "event_types": []}, headers=staff_headers
    )
    assert_problem(empty, 422, "validation_error")
    assert await snapshot(rt(app).db) == before


async def test_a_bad_change_to_an_endpoint_changes_nothing(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    created = await register(client, staff_headers, "https://hooks.example/in")
    before = await snapshot(rt(app).db)
    path = f"{WEBHOOKS}/{created['id']}"
    for patch, code in [
        ({"url": "gopher://x", "active": False}, "invalid_webhook_url"),
        ({"event_types": ["Nope"], "active": False}, "unknown_event_type"),
    ]:
        assert_problem(await client.patch(path, json=patch, headers=staff_headers), 422, code)
    missing = await client.patch(f"{WEBHOOKS}/whk_missing", json={}, headers=staff_headers)
    assert_problem(missing, 404, "not_found")
    malformed = await client.post(
        WEBHOOKS,
        content=b"{not json",
        headers={**staff_headers, "content-type": "application/json"},
    )
    assert_problem(malformed, 400, "malformed_json")
    assert await snapshot(rt(app).db) == before


async def test_only_staff_may_manage_webhooks_and_read_mails(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    customer = await user_headers(app, "customer", "shopper@example.com")
    before = await snapshot(rt(app).db)
    body = {"url": "https://hooks.example/in", "event_types": ["OrderPlaced"]}
    assert_problem(await client.post(WEBHOOKS, json=body), 401, "unauthorized")
    assert_problem(await client.post(WEBHOOKS, json=body, headers=customer), 403, "forbidden")
    assert_problem(await client.get(WEBHOOKS, headers=customer), 403, "forbidden")
    assert_problem(await client.get(EMAILS, headers=customer), 403, "forbidden")
    assert await snapshot(rt(app).db) == before


async def test_the_delivery_log_and_a_manual_retry(
    app: FastAPI,
    client: httpx.AsyncClient,
    staff_headers: dict[str, str],
    receiver: Receiver,
) -> None:
    runtime = rt(app)
    created = await register(client, staff_headers, receiver.url)
    await place_order(runtime.db)
    await worker.run_once(runtime)

    log = await client.get(f"{WEBHOOKS}/{created['id']}/deliveries", headers=staff_headers)
    assert log.status_code == 200
    [delivery] = log.json()["items"]
    assert delivery["status"] == "delivered" and delivery["event_type"] == "OrderPlaced"
    assert delivery["last_status_code"] == 200 and delivery["attempts"] == 1

    retry = await client.post(
        f"{WEBHOOKS}/{created['id']}/deliveries/{delivery['id']}/retry", headers=staff_headers
    )
    assert retry.status_code == 200
    assert retry.json()["status"] == "pending"
    await worker.run_once(runtime)
    assert len(receiver.requests) == 2
    assert len(set(receiver.event_ids())) == 1

    unknown = await client.post(
        f"{WEBHOOKS}/{created['id']}/deliveries/whd_missing/retry", headers=staff_headers
    )
    assert_problem(unknown, 404, "not_found")
    bad_status = await client.get(
        f"{WEBHOOKS}/{created['id']}/deliveries?status=bogus", headers=staff_headers
    )
    assert_problem(bad_status, 422, "validation_error")


async def test_the_mail_log_links_to_each_mail_as_an_eml_file(
    app: FastAPI, client: httpx.AsyncClient, staff_headers: dict[str, str], settings: Settings
) -> None:
    runtime = rt(app)
    order = await place_order(runtime.db, email="bea@example.com")
    await worker.run_once(runtime)

    listed = await client.get(EMAILS, params={"order_id": order.id}, headers=staff_headers)
    assert listed.status_code == 200
    [mail] = listed.json()["items"]
    assert mail["to"] == "bea@example.com" and mail["status"] == "sent"
    assert mail["kind"] == "order_placed" and order.id in mail["subject"]

    download = await client.get(mail["download_url"], headers=staff_headers)
    assert download.status_code == 200
    assert download.headers["content-type"] == "message/rfc822"
    assert mail["file_name"] in download.headers["content-disposition"]
    msg = message_from_bytes(download.content, policy=policy.default)
    assert msg["To"] == "bea@example.com"
    on_disk = message_from_bytes(
        (settings.data_dir / "mail" / mail["file_name"]).read_bytes(), policy=policy.default
    )
    assert on_disk["Message-ID"] == msg["Message-ID"]

    missing = await client.get(f"{EMAILS}/eml_missing", headers=staff_headers)
    assert_problem(missing, 404, "not_found")
