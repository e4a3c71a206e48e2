"""Scale-out for real: two API processes and two workers (each its own process) on one
PostgreSQL and one Redis, a mixed workload through both API processes, and ``kill -9`` of an
API process in the middle of checkouts and of a worker in the middle of a delivery.

What must hold: every event delivered to every consumer, no consumer handed events by two
workers at once and no job run by two workers at once (the probes in
``tests.support.processes`` write when they start and end), a product edited through one API
process found by the search of the other, every checkout a paid order or undone, and the stock,
money and marketplace checks clean.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from mercato import events, workflows
from mercato.catalog import service as catalog
from mercato.db import Database, utcnow
from mercato.events import OutboxDelivery, OutboxEvent
from mercato.identity import service as identity
from mercato.runtime import Runtime
from mercato.settings import Settings
from mercato.workflows import RUNS
from tests.checkout.conftest import (
    BODY,
    FAST_HASHER,
    Customer,
    check_invariants,
    fill_cart,
    make_customers,
    make_shop,
    make_variant,
)
from tests.support import processes
from tests.support.processes import PROBE_CONSUMER, PROBE_TYPES, Proc, Span

pytestmark = [pytest.mark.processes, pytest.mark.slow]

QUIET_WITHIN = 45.0
LEASE_SECONDS = "2"


@pytest.fixture(autouse=True)
def only_on_postgresql(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if backend != "postgresql":
        pytest.skip("several processes on one database: the production backend")
    monkeypatch.setattr(identity, "PASSWORD_HASHER", FAST_HASHER)


@dataclass
class Fleet:
    env: dict[str, str]
    apis: list[Proc]
    workers: list[Proc]
    customers: list[Customer]
    staff: dict[str, str]
    products: list[str]
    probe_log: Path

    def stop(self) -> None:
        for p in [*self.apis, *self.workers]:
            p.stop()


async def start_fleet(settings: Settings, db: Database, tmp_path: Path, shoppers: int) -> Fleet:
    await make_shop(db)
    variants = [await make_variant(db, price=1500 + 100 * i, stock=500) for i in range(4)]
    async with db.transaction() as uow:
        found = await catalog.get_variants(uow, variants)
    products = [found[v].product_id for v in variants]
    customers = await make_customers(db, shoppers)
    for i, customer in enumerate(customers):
        await fill_cart(db, customer.id, (variants[i % len(variants)], 1 + i % 2))
    async with db.transaction() as uow:
        boss = await identity.create_user(
            uow, email="boss@example.com", password="x" * 12, role="staff", name="Boss"
        )
        staff = {"Authorization": f"Bearer {await identity.issue_token(uow, boss.id, 3600)}"}
    probe_log = tmp_path / "probes.log"
    env = {
        **os.environ,
        "MERCATO_DATABASE_URL": settings.database_url,
        "MERCATO_REDIS_URL": settings.redis_url or "",
        "MERCATO_SECRET_KEY": secrets.token_urlsafe(32),
        "MERCATO_DATA_DIR": str(settings.data_dir),
        "MERCATO_DEMO_MODE": "false",
        "MERCATO_WORKER_LEASE_SECONDS": LEASE_SECONDS,
        "MERCATO_TEST_PROBE_LOG": str(probe_log),
    }
    built = processes.mercato(env, "reindex")
    assert built.returncode == 0, built.stdout + built.stderr
    apis = [processes.api(env, tmp_path, f"api{i}").start() for i in (1, 2)]
    workers = [processes.worker(env, tmp_path, f"worker{i}").start() for i in (1, 2)]
    fleet = Fleet(env, apis, workers, customers, staff, products, probe_log)
    try:
        await processes.wait_healthy(*apis)
    except BaseException:
        fleet.stop()
        raise
    return fleet


async def checkout(client: httpx.AsyncClient, api: Proc, customer: Customer, key: str) -> int:
    headers = {**customer.headers, "Idempotency-Key": key}
    try:
        response = await client.post(f"{api.url}/api/checkout", json=BODY, headers=headers)
    except httpx.TransportError:
        return 0  # the process died under the request
    return response.status_code


async def expected_deliveries(db: Database) -> dict[str, int]:
    types = {c.name: c.types for c in events.dispatcher.consumers.values()}
    types[PROBE_CONSUMER] = PROBE_TYPES
    async with db.transaction() as uow:
        rows = await uow.execute(select(OutboxEvent.type, func.count()).group_by(OutboxEvent.type))
        by_type: dict[str, int] = {t: n for t, n in rows}
    return {
        name: sum(n for t, n in by_type.items() if t in wanted) for name, wanted in types.items()
    }


async def delivered(db: Database) -> dict[str, int]:
    async with db.transaction() as uow:
        rows = await uow.execute(
            select(OutboxDelivery.consumer, func.count()).group_by(OutboxDelivery.consumer)
        )
        return {consumer: n for consumer, n in rows}


async def wait_until_quiet(db: Database) -> dict[str, int]:
    """Until every consumer has every event and no workflow run is left active."""
    deadline = time.monotonic() + QUIET_WITHIN
    while True:
        expected = await expected_deliveries(db)
        got = await delivered(db)
        async with db.transaction() as uow:
            active = await uow.scalar(
                select(func.count()).where(RUNS.c.status.in_(("running", "compensating")))
            )
        if active == 0 and all(got.get(name, 0) == n for name, n in expected.items()):
            return expected
        assert time.monotonic() < deadline, f"not quiet: {expected} vs {got}, {active} runs"
        await asyncio.sleep(0.25)


def assert_checks_clean(env: dict[str, str]) -> None:
    for command in (
        ("inventory", "check"),
        ("payments", "check", "--grace-seconds", "0"),
        ("marketplace", "check"),
    ):
        done = processes.mercato(env, *command)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"


def never_at_once(spans: list[Span]) -> None:
    assert processes.overlapping(spans) == []


async def test_two_api_processes_and_two_workers_share_the_work(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    fleet = await start_fleet(settings, db, tmp_path, shoppers=30)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            gate = asyncio.Semaphore(8)

            async def buy(i: int, customer: Customer) -> int:
                async with gate:
                    return await checkout(client, fleet.apis[i % 2], customer, f"k{i}")

            async def edit_and_find(n: int) -> None:
                product, word = fleet.products[n], f"zephyr{n}kettle"
                edited = await client.patch(
                    f"{fleet.apis[0].url}/api/admin/products/{product}",
                    json={"title": f"Kettle {word}"},
                    headers=fleet.staff,
                )
                assert edited.status_code == 200, edited.text
                deadline = time.monotonic() + 20
                while True:
                    found = await client.get(f"{fleet.apis[1].url}/api/search", params={"q": word})
                    if found.status_code == 200 and product in found.text:
                        return
                    assert time.monotonic() < deadline, (
                        f"{word} never found by the second API: {found.text[:300]}\n"
                        + "\n".join(w.tail() for w in fleet.workers)
                    )
                    await asyncio.sleep(0.1)

            answers = await asyncio.gather(
                *(buy(i, c) for i, c in enumerate(fleet.customers)),
                *(edit_and_find(n) for n in range(2)),
            )
        assert Counter(answers[: len(fleet.customers)]) == {201: len(fleet.customers)}
        expected = await wait_until_quiet(db)
        # Every event handed to the probe exactly once, never by two workers at once.
        spans = processes.probe_spans(fleet.probe_log)
        handed = Counter(s.what for s in spans if s.what.startswith("consumer:"))
        assert len(handed) == expected[PROBE_CONSUMER] and set(handed.values()) == {1}
        never_at_once([s for s in spans if s.what.startswith("consumer:")])
        never_at_once([s for s in spans if s.what == "job"])
    finally:
        fleet.stop()
    totals = await check_invariants(db)
    assert totals.orders == len(fleet.customers)
    assert_checks_clean(fleet.env)


async def test_kill_9_of_an_api_process_and_a_worker_loses_nothing(
    settings: Settings, runtime: Runtime, db: Database, tmp_path: Path
) -> None:
    fleet = await start_fleet(settings, db, tmp_path, shoppers=30)
    killed_at = 0.0
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            gate = asyncio.Semaphore(10)
            done = 0
            eight_done = asyncio.Event()

            async def buy(i: int, customer: Customer) -> int:
                nonlocal done
                async with gate:
                    status = await checkout(client, fleet.apis[i % 2], customer, f"k{i}")
                done += 1
                if done >= 8:
                    eight_done.set()
                return status

            async def kill_api_mid_way() -> None:
                await eight_done.wait()
                fleet.apis[0].kill()

            async def kill_worker_mid_delivery() -> None:
                nonlocal killed_at
                target = fleet.workers[0]
                assert target.proc is not None
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    mine = [
                        s
                        for s in processes.probe_spans(fleet.probe_log)
                        if s.pid == target.proc.pid and s.what.startswith("consumer:")
                    ]
                    if any(s.end is None for s in mine):
                        break
                    await asyncio.sleep(0.002)
                killed_at = time.time()
                target.kill()

            await asyncio.gather(
                *(buy(i, c) for i, c in enumerate(fleet.customers)),
                kill_api_mid_way(),
                kill_worker_mid_delivery(),
            )
        # Restart both. The interrupted checkouts hold a two-minute lease: run the recovery
        # pass as the workers would then, rather than wait for it.
        fleet.apis[0].start()
        fleet.workers[0].start()
        await processes.wait_healthy(fleet.apis[0])
        for _ in range(5):
            if await workflows.recover(runtime, now=utcnow() + timedelta(hours=1)) == 0:
                break
        expected = await wait_until_quiet(db)
        spans = processes.probe_spans(fleet.probe_log)
        handed = {s.what for s in spans if s.what.startswith("consumer:")}
        assert len(handed) == expected[PROBE_CONSUMER]  # at least once each
        cut = [
            Span(s.what, s.pid, s.start, s.end if s.end is not None else killed_at) for s in spans
        ]
        never_at_once([s for s in cut if s.what.startswith("consumer:")])
        never_at_once([s for s in cut if s.what == "job"])
    finally:
        fleet.stop()
    async with db.transaction() as uow:
        statuses = Counter(
            s
            for (s,) in await uow.execute(
                select(RUNS.c.status).where(RUNS.c.workflow == "checkout")
            )
        )
    assert set(statuses) <= {"completed", "failed"}, statuses
    await check_invariants(db)
    assert_checks_clean(fleet.env)
