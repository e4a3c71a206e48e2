"""Flash-sale test helpers: a variant in stock, a sale over it, a keeper with test knobs, and
a Redis nobody listens on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from mercato.db import Database, utcnow
from mercato.flashsale import service
from mercato.flashsale.service import Keeper, NewSale, SaleInfo
from mercato.inventory import service as inventory
from mercato.ratelimit import MemoryTokenBucket, limiter_for
from mercato.runtime import Runtime
from tests.factories import make_product

START = datetime(2030, 1, 1, 10, 0, tzinfo=UTC)
END = START + timedelta(hours=2)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def stocked_variant(db: Database, units: int = 30, *, code: str = "BER") -> str:
    async with db.transaction() as uow:
        existing = {w.code for w in await inventory.list_warehouses(uow)}
        if code not in existing:
            await inventory.create_warehouse(uow, code=code, name=code, countries=["DE", "FR"])
        _, ids = await make_product(uow, title="Limited sneaker")
        await inventory.receive(uow, ids[0], code, units)
    return ids[0]


async def new_sale(
    db: Database,
    variant_id: str,
    allocation: int = 20,
    *,
    limit: int = 1,
    rate: int = 60_000,
    starts_at: datetime = START,
    ends_at: datetime = END,
    now: datetime | None = None,
) -> SaleInfo:
    async with db.transaction() as uow:
        return await service.schedule_sale(
            uow,
            NewSale(
                title="Sneaker drop",
                variants=[(variant_id, allocation)],
                price=4999,
                currency="EUR",
                starts_at=starts_at,
                ends_at=ends_at,
                admission_rate=rate,
                per_customer_limit=limit,
            ),
            now=now or starts_at - timedelta(hours=1),
        )


def make_keeper(runtime: Runtime, **changes: object) -> Keeper:
    """The runtime's gate and limits, an admission pass on every poll."""
    keeper = Keeper.from_settings(
        runtime.settings, service.gate_for(runtime), limiter_for(runtime), admit_every=0.0
    )
    for name, value in changes.items():
        setattr(keeper, name, value)
    return keeper


@pytest.fixture
def keeper(runtime: Runtime) -> Keeper:
    return make_keeper(runtime)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def paced(runtime: Runtime, clock: FakeClock) -> Keeper:
    """A keeper whose admission pace runs on a clock the test moves."""
    return make_keeper(runtime, pace=MemoryTokenBucket(clock=clock))


async def join(
    db: Database, keeper: Keeper, sale_id: str, customer: str, now: datetime
) -> service.Place:
    return await db.run(lambda uow: service.join_queue(uow, keeper, sale_id, customer, now))


async def admit(db: Database, keeper: Keeper, sale_id: str, now: datetime) -> service.PassResult:
    return await db.run(lambda uow: service.admit_due(uow, keeper, sale_id, now))


async def state(
    db: Database, keeper: Keeper, sale_id: str, customer: str, now: datetime
) -> service.QueueState:
    async with db.transaction() as uow:
        return await service.queue_state(uow, keeper, sale_id, customer, now)


async def sale(db: Database, sale_id: str) -> SaleInfo:
    async with db.transaction() as uow:
        return await service.get_sale(uow, sale_id, variants=True)


async def available(db: Database, variant_id: str) -> int:
    async with db.transaction() as uow:
        return (await inventory.availability(uow, [variant_id]))[variant_id]


async def ledger_clean(db: Database) -> None:
    async with db.transaction() as uow:
        differences = await inventory.check_ledger(uow)
    assert differences == [], differences


def dead_redis() -> Redis:
    """A client of a port nothing listens on: every call fails at once."""
    return Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)


def now_() -> datetime:
    return utcnow()
