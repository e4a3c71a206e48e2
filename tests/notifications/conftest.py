"""Notifications test helpers: a real SMTP server (aiosmtpd, from tests/support/smtp.py) and a
real HTTP receiver on 127.0.0.1 free ports, orders placed through the orders service, and event
publishing."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from argon2 import PasswordHasher
from sqlalchemy import delete, func, select

from mercato import events
from mercato.db import Database
from mercato.events import Event, OutboxDelivery, OutboxEvent
from mercato.identity import service as identity
from mercato.ids import new_id
from mercato.notifications.service import DELIVERIES, EMAILS, ENDPOINTS
from mercato.orders import service as orders
from mercato.orders.service import OrderDraft, OrderInfo, OrderLineDraft
from mercato.settings import Settings
from tests.support.smtp import SmtpServer, running_smtp_server, with_smtp


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The test receivers listen on 127.0.0.1, a private target that a shop refuses by default
    # (tests/notifications/test_egress.py checks that refusal with the default settings).
    return settings.model_copy(update={"webhook_allow_private_targets": True})


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real argon2id at its smallest cost: these tests sign in, they do not test hash strength.
    monkeypatch.setattr(
        identity, "PASSWORD_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


# -- a real SMTP server (shared: tests/support/smtp.py) -------------------------------------------


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: SmtpServer) -> Settings:
    return with_smtp(settings, smtp_server)


# -- a real HTTP receiver --------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers ``fail_next`` requests with 500 (``fail_always``: all),
    and while ``hold`` is set it reads a request and then never answers."""

    port: int = 0
    requests: list[Request] = field(default_factory=list)
    fail_next: int = 0
    fail_always: bool = False
    status_on_failure: int = 500
    hold: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    received: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def event_ids(self) -> list[str]:
        return [r.json()["id"] for r in self.requests]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Request(method, path, headers, body))
            self.received.set()
            if self.hold:
                await self.release.wait()
            failing = self.fail_always or self.fail_next > 0
            if self.fail_next > 0:
                self.fail_next -= 1
            status = self.status_on_failure if failing else 200
            answer = b'{"ok":true}'
            writer.write(
                f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recv = Receiver()
    server = await asyncio.start_server(recv.handle, "127.0.0.1", 0)
    recv.port = server.sockets[0].getsockname()[1]
    try:
        yield recv
    finally:
        recv.release.set()
        server.close()
        await server.wait_closed()


# -- orders and events -----------------------------------------------------------------------------


def make_draft(
    *,
    email: str = "ada@example.com",
    title: str = "Steel kettle",
    currency: str = "EUR",
) -> OrderDraft:
    lines = (
        OrderLineDraft(
            variant_id="var_kettle",
            product_id="prod_kettle",
            sku="KET-1",
            title=title,
            options={"colour": "red"},
            quantity=2,
            unit_price=1999,
            subtotal=3998,
            discount=0,
            tax=0,
            total=3998,
        ),
        OrderLineDraft(
            variant_id="var_mug",
            product_id="prod_mug",
            sku="MUG-1",
            title="Mug",
            options={},
            quantity=1,
            unit_price=450,
            subtotal=450,
            discount=0,
            tax=0,
            total=450,
        ),
    )
    return OrderDraft(
        id=new_id("ord"),
        checkout_id=new_id("chk"),
        user_id="usr_test",
        email=email,
        currency=currency,
        lines=lines,
        subtotal=4448,
        shipping=495,
        discount=0,
        tax=0,
        total=4943,
        shipping_address={"name": "Ada", "line1": "1 Main St", "city": "Berlin", "country": "DE"},
        shipping_method="standard",
        promo_code=None,
        payment_intent_id="pi_none",
    )


async def place_order(db: Database, **kwargs: Any) -> OrderInfo:
    """Place an order through the orders service (which publishes OrderPlaced)."""
    async with db.transaction() as conn:
        return await orders.create_order(conn, make_draft(**kwargs))


async def publish(db: Database, event_type: str, aggregate_id: str, payload: dict[str, Any]) -> str:
    async with db.transaction() as conn:
        return await events.publish(conn, event_type, aggregate_id, payload)


async def load_event(db: Database, event_id: str) -> Event:
    async with db.transaction() as conn:
        r = (
            await conn.execute(select(OutboxEvent.__table__).where(OutboxEvent.id == event_id))
        ).one()
    return Event(r.seq, r.id, r.type, r.aggregate_id, dict(r.payload), r.occurred_at)


async def forget_deliveries(db: Database, consumer: str) -> None:
    """Make the outbox deliver everything to ``consumer`` again (as after a crash between
    handling an event and recording that it was handled)."""
    async with db.transaction() as conn:
        await conn.execute(delete(OutboxDelivery).where(OutboxDelivery.consumer == consumer))


async def count(db: Database, table: Any) -> int:
    async with db.transaction() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def rows(db: Database, table: Any, **where: Any) -> list[Any]:
    query = select(table)
    for name, value in where.items():
        query = query.where(table.c[name] == value)
    async with db.transaction() as conn:
        return list(await conn.execute(query.order_by(table.c.created_at, table.c.id)))


async def snapshot(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every notifications table: to prove a refused request wrote nothing."""
    found = {}
    async with db.transaction() as conn:
        for table in (EMAILS, ENDPOINTS, DELIVERIES):
            result = await conn.execute(select(table).order_by(table.c.id))
            found[table.name] = [tuple(r) for r in result]
    return found


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def at(base: datetime, seconds: float) -> datetime:
    return base + timedelta(seconds=seconds)
