"""Webhooks reach public addresses only (unless the shop allows private targets): loopback,
private, link-local and other internal targets are refused at registration (422 naming ``url``)
and again when a delivery connects, where the host is resolved and every address checked."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from mercato.db import utcnow
from mercato.notifications import egress, events, senders, service
from mercato.notifications.service import DELIVERIES
from mercato.problems import Problem
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.notifications.conftest import Receiver, assert_problem, place_order, rows

WEBHOOKS = "/api/admin/webhooks"

INTERNAL_TARGETS = [
    "http://169.254.169.254/latest/meta-data/",  # the cloud metadata service
    "http://[::1]:22/",
    "http://127.0.0.1:6379/",
    "http://localhost:8000/admin",
    "http://api.localhost/",
    "http://10.0.0.7/hooks",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://0.0.0.0:8000/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fd00::1]/",
    "http://224.0.0.1/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:a9fe:a9fe]/",  # IPv4-mapped 169.254.169.254, in hex
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[2002:c0a8:101::1]/",  # 6to4 of 192.168.1.1
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0x7f.1/",
    "http://127.1/",
    "http://192.0.2.10/",  # documentation range
    "http://240.0.0.1/",  # reserved
]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The shop's default, undoing this package's conftest (which allows private targets).
    return settings.model_copy(update={"webhook_allow_private_targets": False})


@pytest.mark.parametrize("url", INTERNAL_TARGETS)
def test_internal_targets_are_refused_by_the_url_check(url: str) -> None:
    with pytest.raises(Problem) as refused:
        service.check_webhook_url(url)
    problem = refused.value
    assert problem.status == 422 and problem.code == "invalid_webhook_url"
    assert [e["field"] for e in problem.extra["errors"]] == ["url"]
    # Allowed by the setting, they are ordinary URLs.
    assert service.check_webhook_url(url, allow_private_targets=True) == url


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_are_public(address: str) -> None:
    assert egress.is_public_address(ipaddress.ip_address(address))


def test_public_urls_and_names_are_accepted_without_resolving_them() -> None:
    for url in ("https://hooks.example.com/in", "http://8.8.8.8:8080/x", "https://[2606:4700::1]/"):
        assert service.check_webhook_url(url) == url


async def test_the_api_refuses_internal_targets_and_writes_nothing(
    client: httpx.AsyncClient, staff_headers: dict[str, str]
) -> None:
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[::1]:22/"):
        answer = await client.post(
            WEBHOOKS, json={"url": url, "event_types": ["OrderPlaced"]}, headers=staff_headers
        )
        body = assert_problem(answer, 422, "invalid_webhook_url")
        assert body["errors"][0]["field"] == "url"
        assert "non-public" in body["errors"][0]["message"]
    created = await client.post(
        WEBHOOKS,
        json={"url": "https://hooks.example.com/in", "event_types": ["OrderPlaced"]},
        headers=staff_headers,
    )
    assert created.status_code == 201
    moved = await client.patch(
        f"{WEBHOOKS}/{created.json()['id']}",
        json={"url": "http://localhost:2375/containers"},
        headers=staff_headers,
    )
    assert_problem(moved, 422, "invalid_webhook_url")
    listed = (await client.get(WEBHOOKS, headers=staff_headers)).json()["items"]
    assert [e["url"] for e in listed] == ["https://hooks.example.com/in"]


async def _deliver_to(runtime: Runtime, url: str) -> None:
    """Register ``url`` (past the registration check) and try to deliver one event to it."""
    db = runtime.db
    async with db.transaction() as uow:
        await service.create_endpoint(
            uow, url=url, event_types=["OrderPlaced"], allow_private_targets=True
        )
    await place_order(db)
    await events.consume_outbox(runtime)
    await senders.deliver_webhooks(db, runtime.settings, now=utcnow())


async def test_a_name_resolving_to_loopback_is_refused_when_the_delivery_connects(
    runtime: Runtime, receiver: Receiver
) -> None:
    """Registered while it pointed elsewhere (or by a shop that allowed it then): the worker
    resolves the name itself and never connects to a private address."""
    await _deliver_to(runtime, f"http://localhost:{receiver.port}/hooks")
    assert receiver.requests == []
    [row] = await rows(runtime.db, DELIVERIES)
    assert row.status == "failed" and row.last_status_code is None
    assert "resolves to" in row.last_error and "not a public address" in row.last_error


async def test_a_private_address_literal_is_refused_when_the_delivery_connects(
    runtime: Runtime, receiver: Receiver
) -> None:
    await _deliver_to(runtime, receiver.url)
    assert receiver.requests == []
    [row] = await rows(runtime.db, DELIVERIES)
    assert row.status == "failed" and "127.0.0.1" in row.last_error


async def test_the_setting_lets_deliveries_reach_private_targets(
    runtime: Runtime, settings: Settings, receiver: Receiver
) -> None:
    runtime.settings = settings.model_copy(update={"webhook_allow_private_targets": True})
    await _deliver_to(runtime, f"http://localhost:{receiver.port}/hooks")
    assert [r.json()["type"] for r in receiver.requests] == ["OrderPlaced"]
    [row] = await rows(runtime.db, DELIVERIES)
    assert row.status == "delivered"
