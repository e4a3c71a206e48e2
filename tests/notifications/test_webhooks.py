"""Webhooks against a real HTTP receiver on 127.0.0.1: signed bodies, retries with backoff,
dead deliveries, disabled endpoints, once in the normal path and at least once after a worker
dies mid-send."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import pytest

from mercato import worker
from mercato.db import Database, utcnow
from mercato.notifications import events as notification_events
from mercato.notifications import senders, service
from mercato.notifications.service import DELIVERIES
from mercato.notifications.signing import signature_header, verify_signature
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.notifications.conftest import (
    Receiver,
    at,
    count,
    forget_deliveries,
    place_order,
    publish,
    rows,
)


async def endpoint(db: Database, url: str, types: list[str] | None = None) -> tuple[str, str]:
    async with db.transaction() as conn:
        info, secret = await service.create_endpoint(
            conn,
            url=url,
            event_types=types or ["OrderPlaced", "ShipmentCreated"],
            allow_private_targets=True,
        )
    return info.id, secret


async def get_endpoint(db: Database, endpoint_id: str) -> service.EndpointInfo:
    async with db.transaction() as conn:
        found = await service.get_endpoint(conn, endpoint_id)
    assert found is not None
    return found


async def deliver(runtime: Runtime, when: datetime, limit: int = service.CLAIM_BATCH) -> int:
    return await senders.deliver_webhooks(runtime.db, runtime.settings, now=when, limit=limit)


async def test_a_delivery_is_signed_and_carries_the_event(
    runtime: Runtime, receiver: Receiver
) -> None:
    db = runtime.db
    endpoint_id, secret = await endpoint(db, receiver.url)
    order = await place_order(db)

    before = int(time.time())
    await worker.run_once(runtime)
    after = int(time.time())

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/hooks"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["type"] == "OrderPlaced"
    assert body["data"]["order_id"] == order.id
    assert body["data"]["total"] == order.total
    assert request.headers["mercato-event-id"] == body["id"]
    assert body["id"].startswith("evt_")
    datetime.fromisoformat(body["created_at"])

    header = request.headers["mercato-signature"]
    assert verify_signature(secret, header, request.body)
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert before <= timestamp <= after
    # Another secret, a changed body, or an old (replayed) signature are all refused.
    assert not verify_signature("whsec_other", header, request.body)
    assert not verify_signature(secret, header, request.body.replace(b"Order", b"Oxder"))
    assert not verify_signature(secret, header, request.body, now=timestamp + 301)
    assert verify_signature(secret, header, request.body, now=timestamp + 299)
    assert not verify_signature(secret, "v1=" + "0" * 64, request.body)
    assert not verify_signature(secret, None, request.body)

    [row] = await rows(db, DELIVERIES)
    assert row.endpoint_id == endpoint_id and row.status == "delivered"
    assert row.attempts == 1 and row.last_status_code == 200 and row.delivered_at is not None


def test_verify_signature_takes_any_of_several_signatures() -> None:
    body = b'{"id":"evt_1"}'
    new = signature_header("whsec_new", body, 1_700_000_000)
    old = signature_header("whsec_old", body, 1_700_000_000)
    both = f"{new},{old.split(',')[1]}"
    assert verify_signature("whsec_old", both, body, now=1_700_000_000)
    assert verify_signature("whsec_new", both, body.decode(), now=1_700_000_000)
    assert not verify_signature("whsec_new", "t=abc,v1=00", body, now=1_700_000_000)
    assert not verify_signature("whsec_new", "garbage", body, now=1_700_000_000)


async def test_only_subscribed_types_and_active_endpoints_get_deliveries(
    runtime: Runtime, receiver: Receiver
) -> None:
    db = runtime.db
    await endpoint(db, receiver.url, ["ShipmentCreated"])
    wants_orders, _ = await endpoint(db, receiver.url, ["OrderPlaced"])
    switched_off, _ = await endpoint(db, receiver.url, ["OrderPlaced"])
    async with db.transaction() as conn:
        await service.update_endpoint(conn, switched_off, active=False)

    await place_order(db)
    await worker.run_once(runtime)

    delivered = await rows(db, DELIVERIES)
    assert [d.endpoint_id for d in delivered] == [wants_orders]
    assert len(receiver.requests) == 1


async def test_the_normal_path_sends_once(runtime: Runtime, receiver: Receiver) -> None:
    db = runtime.db
    await endpoint(db, receiver.url)
    await place_order(db)
    await worker.run_once(runtime)
    await worker.run_once(runtime)
    now = utcnow()
    assert await deliver(runtime, at(now, 7200)) == 0

    # The outbox delivering the event again adds no second delivery.
    await forget_deliveries(db, notification_events.WEBHOOK_CONSUMER)
    await worker.run_once(runtime)

    assert len(receiver.requests) == 1
    assert await count(db, DELIVERIES) == 1


async def test_failures_are_retried_with_exponential_backoff(
    runtime: Runtime, receiver: Receiver
) -> None:
    db = runtime.db
    await endpoint(db, receiver.url)
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    receiver.fail_next = 2
    now = utcnow()

    assert await deliver(runtime, now) == 0
    [row] = await rows(db, DELIVERIES)
    assert row.status == "failed" and row.attempts == 1
    assert row.last_status_code == 500 and row.last_error == "HTTP 500"
    assert at(now, 1) <= row.next_attempt_at <= at(now, 2)  # base 2 s, equal jitter

    assert await deliver(runtime, at(now, 0.5)) == 0  # not due: nothing is sent
    assert len(receiver.requests) == 1

    second = at(now, 2)
    assert await deliver(runtime, second) == 0
    [row] = await rows(db, DELIVERIES)
    assert row.attempts == 2
    assert at(second, 2) <= row.next_attempt_at <= at(second, 4)  # doubled

    assert await deliver(runtime, at(second, 4)) == 1
    [row] = await rows(db, DELIVERIES)
    assert row.status == "delivered" and row.attempts == 3 and row.last_error is None
    # Every attempt carried the same event id: a receiver can dedupe on it.
    assert len(set(receiver.event_ids())) == 1 and len(receiver.requests) == 3


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    top = [service.backoff_seconds(n, 2.0, rand=lambda: 1.0) for n in range(1, 15)]
    low = [service.backoff_seconds(n, 2.0, rand=lambda: 0.0) for n in range(1, 15)]
    assert top[:4] == [2.0, 4.0, 8.0, 16.0]
    assert low[:4] == [1.0, 2.0, 4.0, 8.0]
    assert max(top) == service.BACKOFF_CAP_SECONDS


async def test_an_unreachable_endpoint_is_a_failed_attempt(
    runtime: Runtime, receiver: Receiver
) -> None:
    from tests.support.servers import free_port

    db = runtime.db
    await endpoint(db, f"http://127.0.0.1:{free_port()}/nobody")
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    assert await deliver(runtime, utcnow()) == 0
    [row] = await rows(db, DELIVERIES)
    assert row.status == "failed" and row.last_status_code is None
    assert row.last_error and "Connect" in row.last_error


async def test_a_delivery_is_dead_after_the_maximum_attempts_and_staff_can_retry_it(
    runtime: Runtime, settings: Settings, receiver: Receiver
) -> None:
    runtime.settings = settings.model_copy(update={"webhook_max_attempts": 3})
    db = runtime.db
    endpoint_id, _ = await endpoint(db, receiver.url)
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    receiver.fail_always = True
    now = utcnow()
    for step in range(6):
        await deliver(runtime, at(now, step * 7200))
    [row] = await rows(db, DELIVERIES)
    assert row.status == "dead" and row.attempts == 3
    assert len(receiver.requests) == 3

    receiver.fail_always = False
    async with db.transaction() as conn:
        again = await service.retry_delivery(conn, endpoint_id, row.id)
    assert again.status == "pending" and again.attempts == 0
    assert await deliver(runtime, at(now, 7 * 7200)) == 1
    [row] = await rows(db, DELIVERIES)
    assert row.status == "delivered" and len(receiver.requests) == 4


async def test_an_endpoint_is_disabled_after_consecutive_failures(
    runtime: Runtime, settings: Settings, receiver: Receiver
) -> None:
    runtime.settings = settings.model_copy(update={"webhook_disable_after_failures": 3})
    db = runtime.db
    endpoint_id, _ = await endpoint(db, receiver.url)
    for _ in range(4):
        await place_order(db)
    await notification_events.consume_outbox(runtime)
    receiver.fail_next = 2
    now = utcnow()

    # Two failures, then a success: the count starts again.
    await deliver(runtime, now, limit=1)
    await deliver(runtime, now, limit=1)
    assert (await get_endpoint(db, endpoint_id)).consecutive_failures == 2
    await deliver(runtime, now, limit=1)
    info = await get_endpoint(db, endpoint_id)
    assert info.active and info.consecutive_failures == 0

    receiver.fail_always = True
    sent_before = len(receiver.requests)
    for step in range(1, 6):
        await deliver(runtime, at(now, step * 7200))
    info = await get_endpoint(db, endpoint_id)
    assert not info.active and info.disabled_at is not None
    assert info.consecutive_failures >= 3
    tried = len(receiver.requests)
    assert tried > sent_before

    # Disabled: nothing more is sent, and new events add no deliveries for it.
    await deliver(runtime, at(now, 10 * 7200))
    assert len(receiver.requests) == tried
    pending = await count(db, DELIVERIES)
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    assert await count(db, DELIVERIES) == pending

    # Switched back on, it starts afresh and its waiting deliveries go out.
    receiver.fail_always = False
    async with db.transaction() as conn:
        info = await service.update_endpoint(conn, endpoint_id, active=True)
    assert info.active and info.consecutive_failures == 0 and info.disabled_at is None
    for step in range(11, 14):
        await deliver(runtime, at(now, step * 7200))
    assert {r.status for r in await rows(db, DELIVERIES)} == {"delivered"}


async def test_a_success_resets_the_failure_count(runtime: Runtime, receiver: Receiver) -> None:
    db = runtime.db
    endpoint_id, _ = await endpoint(db, receiver.url)
    await place_order(db)
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    receiver.fail_next = 2
    now = utcnow()
    await deliver(runtime, now)  # both fail
    assert (await get_endpoint(db, endpoint_id)).consecutive_failures == 2
    await deliver(runtime, at(now, 7200))  # both succeed
    assert (await get_endpoint(db, endpoint_id)).consecutive_failures == 0


async def test_a_worker_that_dies_mid_send_is_replaced_and_the_event_arrives_again(
    runtime: Runtime, receiver: Receiver
) -> None:
    """At least once: the first worker's request reached the receiver but the worker died
    before recording the outcome; after its lease runs out the next worker sends again, with
    the same event id, and the delivery is recorded once."""
    db = runtime.db
    _, secret = await endpoint(db, receiver.url)
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    now = utcnow()

    receiver.hold = True
    first = asyncio.create_task(deliver(runtime, now))
    await asyncio.wait_for(receiver.received.wait(), timeout=10)
    first.cancel()  # the worker dies mid-send
    with pytest.raises(asyncio.CancelledError):
        await first
    [row] = await rows(db, DELIVERIES)
    assert row.status == "sending" and row.attempts == 1

    receiver.hold = False
    receiver.release.set()
    # Within the lease nobody else touches it; after the lease the next worker sends it.
    assert await deliver(runtime, at(now, 1)) == 0
    lease = runtime.settings.webhook_timeout_seconds * 2
    assert await deliver(runtime, at(now, lease + 1)) == 1
    assert await deliver(runtime, at(now, lease + 7200)) == 0

    assert len(receiver.requests) == 2
    first_body, second_body = (r.json() for r in receiver.requests)
    assert first_body["id"] == second_body["id"]
    assert first_body["data"] == second_body["data"]
    assert verify_signature(
        secret,
        receiver.requests[1].headers["mercato-signature"],
        receiver.requests[1].body,
        now=at(now, lease + 1).timestamp(),
    )
    [row] = await rows(db, DELIVERIES)
    assert row.status == "delivered" and row.attempts == 2


async def test_a_lost_last_attempt_becomes_dead(
    runtime: Runtime, settings: Settings, receiver: Receiver
) -> None:
    runtime.settings = settings.model_copy(update={"webhook_max_attempts": 1})
    db = runtime.db
    await endpoint(db, receiver.url)
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    now = utcnow()
    receiver.hold = True
    task = asyncio.create_task(deliver(runtime, now))
    await asyncio.wait_for(receiver.received.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    receiver.release.set()
    await deliver(runtime, at(now, 3600))
    [row] = await rows(db, DELIVERIES)
    assert row.status == "dead" and row.last_error
    assert len(receiver.requests) == 1


async def test_endpoints_registered_after_an_event_do_not_get_it(
    runtime: Runtime, receiver: Receiver
) -> None:
    db = runtime.db
    await place_order(db)
    await endpoint(db, receiver.url)
    await worker.run_once(runtime)
    assert receiver.requests == []


async def test_events_from_every_module_can_be_delivered(
    runtime: Runtime, receiver: Receiver
) -> None:
    db = runtime.db
    await endpoint(db, receiver.url, ["ShipmentCreated", "RefundIssued", "PaymentRefunded"])
    payloads: dict[str, dict[str, Any]] = {
        "ShipmentCreated": {"order_id": "ord_1", "shipment_id": "shp_1", "carrier": "DHL"},
        "RefundIssued": {"order_id": "ord_1", "return_id": "ret_1", "amount": 5, "currency": "EUR"},
        "PaymentRefunded": {"intent_id": "pi_1", "amount": 5},
    }
    for event_type, payload in payloads.items():
        await publish(db, event_type, "agg_1", payload)
    await worker.run_once(runtime)
    got = {r.json()["type"]: r.json()["data"] for r in receiver.requests}
    assert got == payloads
    assert all(json.loads(r.body)["id"] == r.headers["mercato-event-id"] for r in receiver.requests)


async def test_concurrent_workers_never_send_one_delivery_twice(
    runtime: Runtime, receiver: Receiver
) -> None:
    db = runtime.db
    await endpoint(db, receiver.url)
    for _ in range(12):
        await place_order(db)
    await notification_events.consume_outbox(runtime)
    now = utcnow()

    sent = await asyncio.gather(*(deliver(runtime, now, limit=5) for _ in range(4)))
    sent_more = await asyncio.gather(*(deliver(runtime, now, limit=5) for _ in range(4)))

    assert sum(sent) + sum(sent_more) == 12
    ids = receiver.event_ids()
    assert len(ids) == 12 and len(set(ids)) == 12
    assert {r.status for r in await rows(db, DELIVERIES)} == {"delivered"}


async def test_a_receiver_that_never_answers_times_out(
    runtime: Runtime, settings: Settings, receiver: Receiver
) -> None:
    runtime.settings = settings.model_copy(update={"webhook_timeout_seconds": 0.3})
    db = runtime.db
    await endpoint(db, receiver.url)
    await place_order(db)
    await notification_events.consume_outbox(runtime)
    receiver.hold = True
    assert await deliver(runtime, utcnow()) == 0
    [row] = await rows(db, DELIVERIES)
    assert row.status == "failed" and row.last_status_code is None
    assert any(word in (row.last_error or "") for word in ("timed out", "Timeout"))
