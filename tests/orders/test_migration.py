"""Migration 0015 on a database as the earlier code left it: order histories lose their made-up
``pending`` entry, and every flow left half-way (a cancellation, a shipment whose capture was not
confirmed, a refund not made) becomes a workflow run that recovery then finishes."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from mercato import migrate, workflows
from mercato.db import JSONType, UTCDateTime, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.orders import service as orders
from mercato.returns import service as returns
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.support.servers import PostgresServer

BEFORE = "0014_checkout_workflow"
_names = itertools.count()
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def _table(
    name: str, *columns: str, times: tuple[str, ...] = (), json: tuple[str, ...] = ()
) -> Any:
    return sa.table(
        name,
        *(sa.column(c) for c in columns),
        *(sa.column(c, UTCDateTime()) for c in times),
        *(sa.column(c, JSONType) for c in json),
    )


ORDERS = _table(
    "orders_orders",
    "id", "checkout_id", "user_id", "email", "status", "previous_status", "version", "currency",
    "subtotal", "shipping", "discount", "tax", "total", "refunded_total", "units_shipped",
    "shipping_method", "promo_code", "payment_intent_id",
    times=("stock_returned_at", "payment_released_at", "created_at", "updated_at"),
    json=("shipping_address",),
)  # fmt: skip
LINES = _table(
    "orders_lines",
    "id", "order_id", "position", "variant_id", "product_id", "sku", "title", "quantity",
    "unit_price", "subtotal", "discount", "tax", "total", "quantity_shipped", "quantity_returned",
    json=("options",),
)  # fmt: skip
HISTORY = _table(
    "orders_history", "id", "order_id", "seq", "from_status", "to_status", "actor", "reason",
    times=("created_at",),
)  # fmt: skip
FULFILMENTS = _table(
    "fulfilment_fulfilments", "id", "order_id", "warehouse_code", "status",
    times=("created_at", "updated_at"),
)  # fmt: skip
ITEMS = _table(
    "fulfilment_items", "id", "fulfilment_id", "order_id", "order_line_id", "variant_id",
    "quantity", "quantity_claimed", "quantity_shipped",
)  # fmt: skip
SHIPMENTS = _table(
    "fulfilment_shipments", "id", "order_id", "fulfilment_id", "carrier", "service",
    "tracking_number", "tracking_url", "label", "status", "currency", "capture_amount",
    "created_by", times=("created_at", "updated_at"),
)  # fmt: skip
SHIPMENT_ITEMS = _table(
    "fulfilment_shipment_items", "id", "shipment_id", "fulfilment_item_id", "order_line_id",
    "quantity",
)  # fmt: skip
REQUESTS = _table(
    "returns_requests", "id", "order_id", "user_id", "status", "reason", "currency",
    "refund_amount", "refund_shipping", times=("created_at", "updated_at", "received_at"),
)  # fmt: skip
RETURN_LINES = _table(
    "returns_lines", "id", "request_id", "order_id", "order_line_id", "quantity", "disposition",
    "warehouse_code", "amount",
)  # fmt: skip


@pytest.fixture
async def old_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database at the revision before 0015."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        name = f"m{next(_names)}"
        conn = await asyncpg.connect(server.dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        url = server.url(name)
    migrate.upgrade(url, BEFORE)
    return url


@pytest.fixture
async def old_runtime(old_url: str, tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = Runtime.from_settings(
        Settings(database_url=old_url, secret_key="test-secret-key", data_dir=tmp_path / "d")
    )
    try:
        yield rt
    finally:
        await rt.close()


def _order(order_id: str, status: str, version: int, **values: Any) -> dict[str, Any]:
    return {
        "id": order_id, "checkout_id": f"chk_{order_id}", "user_id": "usr_1",
        "email": "ada@example.com", "status": status, "previous_status": None,
        "version": version, "currency": "EUR", "subtotal": 1000, "shipping": 0, "discount": 0,
        "tax": 0, "total": 1000, "refunded_total": 0, "units_shipped": 0,
        "shipping_method": "standard", "promo_code": None, "payment_intent_id": "",
        "stock_returned_at": None, "payment_released_at": None, "created_at": T0,
        "updated_at": T0, "shipping_address": {"country": "DE"}, **values,
    }  # fmt: skip


def _line(order_id: str, **values: Any) -> dict[str, Any]:
    return {
        "id": f"ol_{order_id}", "order_id": order_id, "position": 1, "variant_id": "var_1",
        "product_id": "prod_1", "sku": "SKU-1", "title": "Mug", "quantity": 1,
        "unit_price": 1000, "subtotal": 1000, "discount": 0, "tax": 0, "total": 1000,
        "quantity_shipped": 0, "quantity_returned": 0, "options": {}, **values,
    }  # fmt: skip


def _history(order_id: str, *moves: str) -> list[dict[str, Any]]:
    """The history the earlier code wrote: made-up pending, then paid, then ``moves``."""
    chain = [None, "pending", "paid", *moves]
    return [
        {
            "id": f"oh_{order_id}_{n}", "order_id": order_id, "seq": n, "from_status": chain[n - 1],
            "to_status": chain[n], "actor": "checkout:x", "reason": None, "created_at": T0,
        }
        for n in range(1, len(chain))
    ]  # fmt: skip


async def _old_shop(rt: Runtime) -> None:
    """A: fulfilling. B: cancelled, nothing done yet. C: cancelled, stock back, money not.
    D: cancelled and finished. E: a shipment whose capture was not confirmed. F: goods back,
    refund not made."""
    done = T0 + timedelta(minutes=5)
    async with rt.db.transaction() as uow:
        await uow.execute(
            sa.insert(ORDERS),
            [
                _order("ord_a", "fulfilling", 3, previous_status="paid"),
                _order("ord_b", "cancelled", 3, previous_status="paid"),
                _order("ord_c", "cancelled", 3, previous_status="paid", stock_returned_at=done),
                _order(
                    "ord_d", "cancelled", 3, previous_status="paid", stock_returned_at=done,
                    payment_released_at=done,
                ),
                _order("ord_e", "paid", 2, previous_status="pending"),
                _order(
                    "ord_f", "returned", 6, previous_status="return_requested", units_shipped=1
                ),
            ],
        )  # fmt: skip
        await uow.execute(
            sa.insert(LINES),
            [
                _line("ord_e"),
                _line("ord_f", quantity_shipped=1, quantity_returned=1),
            ],
        )
        await uow.execute(
            sa.insert(HISTORY),
            _history("ord_a", "fulfilling")
            + _history("ord_b", "cancelled")
            + _history("ord_c", "cancelled")
            + _history("ord_d", "cancelled")
            + _history("ord_e")
            + _history("ord_f", "shipped", "delivered", "return_requested", "returned"),
        )
        await uow.execute(
            sa.insert(FULFILMENTS),
            [{"id": "ful_e", "order_id": "ord_e", "warehouse_code": "W1", "status": "packed",
              "created_at": T0, "updated_at": T0}],
        )  # fmt: skip
        await uow.execute(
            sa.insert(ITEMS),
            [{"id": "fli_e", "fulfilment_id": "ful_e", "order_id": "ord_e",
              "order_line_id": "ol_ord_e", "variant_id": "var_1", "quantity": 1,
              "quantity_claimed": 1, "quantity_shipped": 0}],
        )  # fmt: skip
        await uow.execute(
            sa.insert(SHIPMENTS),
            [{"id": "shp_e", "order_id": "ord_e", "fulfilment_id": "ful_e", "carrier": "sandbox",
              "service": "standard", "tracking_number": "SBX000000000001", "tracking_url": None,
              "label": None, "status": "pending", "currency": "EUR", "capture_amount": 0,
              "created_by": "staff:usr_9", "created_at": T0, "updated_at": T0}],
        )  # fmt: skip
        await uow.execute(
            sa.insert(SHIPMENT_ITEMS),
            [{"id": "shi_e", "shipment_id": "shp_e", "fulfilment_item_id": "fli_e",
              "order_line_id": "ol_ord_e", "quantity": 1}],
        )  # fmt: skip
        await uow.execute(
            sa.insert(REQUESTS),
            [{"id": "rma_f", "order_id": "ord_f", "user_id": "usr_1", "status": "received",
              "reason": "Too small", "currency": "EUR", "refund_amount": 0,
              "refund_shipping": False, "created_at": T0, "updated_at": T0, "received_at": done}],
        )  # fmt: skip
        await uow.execute(
            sa.insert(RETURN_LINES),
            [{"id": "rml_f", "request_id": "rma_f", "order_id": "ord_f",
              "order_line_id": "ol_ord_f", "quantity": 1, "disposition": "restock",
              "warehouse_code": "W1", "amount": 0}],
        )  # fmt: skip


async def test_0015_makes_histories_honest_and_left_flows_into_runs(
    old_url: str, old_runtime: Runtime
) -> None:
    rt = old_runtime
    await _old_shop(rt)
    migrate.upgrade(old_url)

    async with rt.db.transaction() as uow:
        a = await orders.get_order(uow, "ord_a")
        f = await orders.get_order(uow, "ord_f")
        d = await orders.get_order(uow, "ord_d")
        runs = {
            key: await workflows.find_run(uow, name, key)
            for name, key in (
                ("orders.cancellation", "ord_b"),
                ("orders.cancellation", "ord_c"),
                ("orders.cancellation", "ord_d"),
                ("fulfilment.ship_and_capture", "shp_e"),
                ("returns.return_and_refund", "rma_f"),
            )
        }
    assert a is not None and f is not None and d is not None
    assert [(h.seq, h.from_status, h.to_status) for h in a.history] == [
        (1, None, "paid"),
        (2, "paid", "fulfilling"),
    ]
    assert a.version == 2 and f.version == 5
    assert [h.to_status for h in f.history] == [
        "paid", "shipped", "delivered", "return_requested", "returned",
    ]  # fmt: skip
    assert d.payment_released_at == T0 + timedelta(minutes=5)  # read back from its run
    assert {k: (r.status, r.step) for k, r in runs.items() if r is not None} == {
        "ord_b": ("waiting", "cancel"),
        "ord_c": ("waiting", "give_money_back"),
        "ord_d": ("completed", ""),
        "shp_e": ("waiting", "capture"),
        "rma_f": ("waiting", "refund"),
    }

    # Recovery finishes every flow that was left half-way, from the state the migration wrote.
    assert await workflows.recover(rt, now=utcnow() + timedelta(hours=1)) == 4
    async with rt.db.transaction() as uow:
        counts = {
            name: await workflows.count_by_status(uow, name)
            for name in (
                "orders.cancellation",
                "fulfilment.ship_and_capture",
                "returns.return_and_refund",
            )
        }
        b = await orders.get_order(uow, "ord_b")
        e = await orders.get_order(uow, "ord_e")
        f = await orders.get_order(uow, "ord_f")
        shipment = await fulfilment.get_shipment(uow, "shp_e")
        refunded = await returns.get_return(uow, "rma_f")
    assert counts == {
        "orders.cancellation": {"completed": 3},
        "fulfilment.ship_and_capture": {"completed": 1},
        "returns.return_and_refund": {"completed": 1},
    }
    assert b is not None and b.stock_returned_at is not None
    assert b.payment_released_at is not None
    assert e is not None and e.status == "shipped" and e.units_shipped == 1
    assert shipment is not None and shipment.status == "in_transit"
    assert f is not None and f.status == "refunded" and f.history[-1].seq == f.version == 6
    assert refunded is not None and refunded.status == "refunded"
