"""The expiry job, the ``mercato inventory`` commands, and the demo stock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update
from typer.testing import CliRunner, Result

from mercato import worker
from mercato.cli import app as cli_app
from mercato.db import Database, utcnow
from mercato.events import OutboxEvent
from mercato.inventory import service
from mercato.inventory.demo import DEMO_WAREHOUSES, seed_inventory
from mercato.inventory.events import expire_reservations
from mercato.inventory.service import STOCK
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.factories import make_product
from tests.inventory.conftest import Warehouses, ledger_ok, receive, stock_of


async def test_worker_job_expires_overdue_reservations(
    runtime: Runtime, warehouses: Warehouses, variant: str
) -> None:
    db = runtime.db
    assert "inventory.expire" in {j.name for j in worker.jobs()}
    await receive(db, variant, "BER", 10)
    past = utcnow() - timedelta(hours=1)
    async with db.transaction() as conn:
        await service.reserve(conn, "co_late", [(variant, 4)], ttl_seconds=60, now=past)
        await service.reserve(conn, "co_fresh", [(variant, 1)])
    assert await expire_reservations(runtime) == 1
    assert await expire_reservations(runtime) == 0
    assert await stock_of(db, variant) == {"BER": (10, 1)}
    async with db.transaction() as conn:
        (expired,) = await service.list_reservations(conn, state="expired")
        payloads = (
            await conn.scalars(
                select(OutboxEvent.payload)
                .where(OutboxEvent.type == "StockChanged")
                .order_by(OutboxEvent.seq.desc())
            )
        ).all()
    assert expired.owner == "co_late"
    assert payloads[0] == {"variant_id": variant, "available": 9, "in_stock": True}
    await ledger_ok(db)


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli_app, args, catch_exceptions=False)


async def cli(*args: str) -> Result:
    # The commands run their own event loop (asyncio.run): keep them off the test's loop.
    return await asyncio.to_thread(_invoke, list(args))


async def test_cli_check_and_receive(
    settings: Settings, db: Database, warehouses: Warehouses
) -> None:
    async with db.transaction() as session:
        _, (variant,) = await make_product(session, variants=[{"sku": "CLI-KET"}])
    url = settings.database_url
    result = await cli(
        "inventory",
        "receive",
        "--sku",
        "CLI-KET",
        "--warehouse",
        "BER",
        "--quantity",
        "8",
        "--database",
        url,
    )
    assert result.exit_code == 0, result.output
    assert "on hand 8" in result.output
    assert await stock_of(db, variant) == {"BER": (8, 0)}

    result = await cli("inventory", "check", "--database", url)
    assert result.exit_code == 0, result.output
    assert "1 stock rows, 0 differences" in result.output

    async with db.transaction() as conn:
        await conn.execute(update(STOCK).values(on_hand=11))
    result = await cli("inventory", "check", "--database", url)
    assert result.exit_code == 1
    assert variant in result.output
    assert "1 differences" in result.output

    result = await cli(
        "inventory",
        "receive",
        "--sku",
        "CLI-KET",
        "--warehouse",
        "NOPE",
        "--quantity",
        "1",
        "--database",
        url,
    )
    assert result.exit_code == 1
    assert "no warehouse" in result.output


async def test_demo_stock_is_deterministic_and_balanced(db: Database) -> None:
    first = [f"var_demo_a{i:04d}" for i in range(400)]
    second = [f"var_demo_b{i:04d}" for i in range(400)]
    await seed_inventory(db, first, seed=7)
    done: list[int] = []
    await seed_inventory(db, second, seed=7, progress=done.append)
    assert sum(done) == 400
    async with db.transaction() as conn:
        codes = [w.code for w in await service.list_warehouses(conn)]
        a = await service.availability(conn, first)
        b = await service.availability(conn, second)
    assert sorted(codes) == sorted(spec["code"] for spec in DEMO_WAREHOUSES)
    assert [a[v] for v in first] == [b[v] for v in second]
    counts = list(a.values())
    assert any(n == 0 for n in counts)
    assert any(0 < n <= 5 for n in counts)
    assert sum(n > 5 for n in counts) > len(counts) // 2
    await ledger_ok(db)
