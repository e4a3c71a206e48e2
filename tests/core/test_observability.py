"""What operators read: liveness and readiness probes, /metrics and who may scrape it, the
request id on answers, log lines, outbox events and their handlers."""

from __future__ import annotations

import json
import logging
import re

import httpx
import pytest
from fastapi import FastAPI

from mercato import events
from mercato.inventory import service as inventory
from mercato.logs import JsonFormatter, bound_request_id, current_request_id
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.search import service as search
from tests.factories import make_product


def _runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def test_readiness_names_each_check(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    assert (await client.get("/api/health")).json() == {"status": "ok"}

    # A fresh shop has no search index yet: alive, not ready.
    r = await client.get("/api/ready")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "not_ready" and "Retry-After" in r.headers
    assert body["checks"]["database"] == {"ok": True, "detail": None, "required": True}
    assert body["checks"]["search_index"]["ok"] is False
    assert ("redis" in body["checks"]) is (backend == "postgresql")

    await search.reindex(_runtime(app))
    r = await client.get("/api/ready")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "ready"
    assert all(check["ok"] for check in r.json()["checks"].values())

    document = (await client.get("/api/openapi.json")).json()
    assert "503" in document["paths"]["/api/ready"]["get"]["responses"]
    assert "/api/health" in document["paths"]
    assert "/metrics" not in document["paths"]


async def test_request_ids_are_echoed_or_made_up(client: httpx.AsyncClient, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("no storage involved")
    given = await client.get("/api/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await client.get("/api/nothing-here")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    # Not something to write into a log line as it is.
    odd = await client.get("/api/health", headers={"X-Request-ID": "a b\tc" * 40})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])


def _sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return 0.0


async def test_metrics(app: FastAPI, client: httpx.AsyncClient) -> None:
    runtime = _runtime(app)
    async with runtime.db.transaction() as uow:
        _, [variant] = await make_product(uow)  # publishes events nobody has handled yet
    with pytest.raises(Problem):
        async with runtime.db.transaction() as uow:
            await inventory.reserve(uow, "chk_metrics", [(variant, 1)])  # none in stock
    await client.get("/api/orders/ord_unknown")

    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    # By route template, never by the raw path.
    assert "ord_unknown" not in text
    assert _sample(text, "mercato_http_requests_total", route="/api/orders/{order_id}") >= 1
    assert _sample(text, "mercato_reservation_failures_total", reason="out_of_stock") >= 1
    assert _sample(text, "mercato_outbox_undelivered_events", consumer="search-index") >= 1
    assert _sample(text, "mercato_outbox_oldest_undelivered_age_seconds", consumer="search-index")
    for name in ("mercato_workflow_runs", "mercato_flashsale_queue_length"):
        assert f"# TYPE {name} gauge" in text

    await events.dispatcher.dispatch_once(runtime)
    text = (await client.get("/metrics")).text
    assert _sample(text, "mercato_outbox_undelivered_events", consumer="search-index") == 0
    assert (
        _sample(text, "mercato_outbox_oldest_undelivered_age_seconds", consumer="search-index") == 0
    )


async def test_metrics_are_not_public(
    app: FastAPI, client: httpx.AsyncClient, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("no storage involved")
    # Without a token: this host only, and not through a proxy.
    proxied = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403 and proxied.json()["code"] == "forbidden"
    _runtime(app).settings.metrics_token = "scrape-secret"
    assert (await client.get("/metrics")).status_code == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert right.status_code == 200


async def test_the_request_id_reaches_the_event_handler(app: FastAPI) -> None:
    runtime = _runtime(app)
    seen: list[tuple[str | None, str | None, dict[str, object]]] = []

    async def handler(_runtime: Runtime, event: events.Event) -> None:
        seen.append((event.request_id, current_request_id(), event.payload))

    events.dispatcher.register(events.Consumer.of("test-request-id", ["RequestIdProbe"], handler))
    try:
        with bound_request_id("req-42"):
            async with runtime.db.transaction() as uow:
                await events.publish(uow, "RequestIdProbe", "agg_1", {"n": 1})
        async with runtime.db.transaction() as uow:
            await events.publish(uow, "RequestIdProbe", "agg_2", {"n": 2})
        await events.dispatcher.dispatch_once(runtime, only=["test-request-id"])
    finally:
        events.dispatcher.consumers.pop("test-request-id")
    # Handlers never see the metadata in the payload.
    assert seen == [("req-42", "req-42", {"n": 1}), (None, None, {"n": 2})]


def test_json_log_lines() -> None:
    record = logging.LogRecord(
        "mercato.test", logging.WARNING, __file__, 1, "hello %s", ("x",), None
    )
    with bound_request_id("req-7"):
        line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["logger"] == "mercato.test"
    assert line["message"] == "hello x" and line["request_id"] == "req-7"
    assert line["time"].endswith("+00:00")
    outside = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, "started", (), None)
    outside.color_message = "\x1b[1mstarted\x1b[0m"
    assert json.loads(JsonFormatter().format(outside))["request_id"] is None
    assert "color_message" not in JsonFormatter().format(outside)
