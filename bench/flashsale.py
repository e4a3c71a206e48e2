"""A flash sale over HTTP: ``mercato serve --workers 2`` and ``mercato worker`` on PostgreSQL +
Redis, thousands of buyers arriving within seconds; then the same buyers through the regular
checkout, with no gate, for the same stock.

Run from the repository root::

    python -m bench.flashsale                    # 5,000 buyers within 5 s, 500 units
    python -m bench.flashsale --buyers 1000      # a lighter run

It starts a private PostgreSQL and Redis (the test suite's servers: fsync off), migrates, seeds
a demo catalog, the shipping/tax setup and one customer (with a bearer token) per buyer, sets
``--units`` aside for a live sale, and starts the server and a worker. Buyers arrive uniformly
over ``--arrival`` seconds; each joins the waiting room (``POST …/queue``), polls
(``GET …/queue/me``) until admitted or sold out, checks out (``POST …/checkout``, 202) and
polls its purchase until it is an order. Measured: join latency, time from admission to order,
time to sell out, orders per second (orders / time from the first checkout to the last order),
PostgreSQL CPU per order. Then the same buyers each add one unit of another variant with
``--units`` in stock to their cart and ``POST /api/checkout``, arriving the same way.

Every run checks: units sold = the allocation = flash orders, the stock ledger balances, the
sandbox processor holds one live charge per order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import secrets
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from rich.console import Console

from bench.checkout import BODY, SECRET_KEY, SERVER_LOG, stop_server, tree_cpu, wait_until_up
from bench.common import CURRENCY, ROOT, machine, migrated_database, seed_hot_and_spread

console = Console()
WORKER_LOG = ROOT / "bench" / "results" / "flashsale-worker.log"
TIMELINE = ROOT / "bench" / "results" / "flashsale-timeline.json"
ADDRESS = BODY["shipping_address"]


@dataclass
class Phase:
    name: str
    joins: list[float] = field(default_factory=list)
    joins_from_arrival: list[float] = field(default_factory=list)
    to_order: list[float] = field(default_factory=list)
    order_times: list[float] = field(default_factory=list)
    first_checkout: float = float("inf")
    outcomes: Counter[str] = field(default_factory=Counter)
    timeline: list[dict[str, float]] = field(default_factory=list)
    db_cpu: float = 0.0
    api_cpu: float = 0.0
    load: float = 0.0
    t0_wall: float = 0.0

    @property
    def orders(self) -> int:
        return len(self.order_times)

    @property
    def sellout_seconds(self) -> float:
        return max(self.order_times) - self.first_checkout if self.order_times else 0.0

    @property
    def per_second(self) -> float:
        return self.orders / self.sellout_seconds if self.sellout_seconds else 0.0


async def server_times(base: str) -> dict[tuple[str, str], tuple[float, float, dict[float, float]]]:
    """The server's own request histogram (``/metrics``, summed over its processes): per
    (method, route), the count, the seconds summed and the cumulative count per bucket bound."""
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession(base) as client, client.get("/metrics") as r:
        text = await r.text()
    out: dict[tuple[str, str], tuple[float, float, dict[float, float]]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "mercato_http_request_duration_seconds":
            continue
        for sample in family.samples:
            key = (sample.labels["method"], sample.labels["route"])
            count, total, buckets = out.get(key, (0.0, 0.0, {}))
            if sample.name.endswith("_count"):
                count += sample.value
            elif sample.name.endswith("_sum"):
                total += sample.value
            elif sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
            out[key] = (count, total, buckets)
    return out


def server_lines(
    before: dict[tuple[str, str], tuple[float, float, dict[float, float]]],
    after: dict[tuple[str, str], tuple[float, float, dict[float, float]]],
) -> list[str]:
    """What the server measured over a phase, per route: requests, mean, and the bucket bound
    under which half and 99 % of them were answered."""
    lines = []
    for key, (count, total, buckets) in sorted(after.items(), key=lambda kv: -kv[1][0]):
        c0, t0, b0 = before.get(key, (0.0, 0.0, {}))
        n = count - c0
        if n <= 0:
            continue
        delta = sorted((bound, buckets[bound] - b0.get(bound, 0.0)) for bound in buckets)

        def under(share: float, delta: list[tuple[float, float]] = delta, n: float = n) -> str:
            bound = next((b for b, c in delta if c >= share * n), float("inf"))
            return f"≤{bound * 1000:.0f} ms" if bound != float("inf") else ">10 s"

        lines.append(
            f"  {key[0]:>4} {key[1]:<48} {n:6.0f} requests, mean {(total - t0) / n * 1000:7.1f} "
            f"ms, p50 {under(0.5)}, p99 {under(0.99)}"
        )
    return lines


async def warm_up(base: str, sale: str) -> None:
    """A few requests to each API process before the clock starts: FastAPI builds its routing
    tables on a process's first requests, which would otherwise land on the first buyers."""
    paths = [f"/api/flash-sales/{sale}/queue/me", "/api/products?limit=1", "/api/cart"]
    async with aiohttp.ClientSession(base, connector=aiohttp.TCPConnector(limit=16)) as client:
        for _ in range(3):
            await asyncio.gather(*(send(client, "GET", path) for path in paths * 16))


def pct(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


def env_for(url: str, redis_url: str, args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "MERCATO_DB_POOL_SIZE": str(args.pool_size),
        "MERCATO_DB_MAX_OVERFLOW": str(args.max_overflow),
        "MERCATO_DATABASE_URL": url,
        "MERCATO_REDIS_URL": redis_url,
        "MERCATO_SECRET_KEY": SECRET_KEY,
        "MERCATO_CURRENCY": CURRENCY,
        # Every buyer comes from 127.0.0.1 here: the per-address limit would refuse the crowd.
        "MERCATO_FLASHSALE_REQUESTS_PER_IP_PER_MINUTE": "100000000",
        "PYTHONPATH": str(ROOT / "src"),
    }


def start(command: list[str], env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "mercato.cli", *command],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def seed(db: Any, products: int, units: int, buyers: int) -> tuple[str, str, list[str]]:
    """Catalog, ``units`` of two variants (the sale's, the regular checkout's), the shipping and
    tax setup, one customer with a bearer token per buyer (cheap argon2: logins are not
    measured, and tokens are made before the clock starts)."""
    from argon2 import PasswordHasher

    from mercato.checkout.demo import seed_checkout
    from mercato.identity import service as identity

    hot, [regular] = await seed_hot_and_spread(
        db,
        products=products,
        seed=7,
        spread_variants=1,
        hot_stock=units,
        spread_stock=units,
        currency=CURRENCY,
    )
    await seed_checkout(db, currency=CURRENCY)
    identity.PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    tokens = []
    for start_at in range(0, buyers, 500):
        async with db.transaction() as s:
            for i in range(start_at, min(buyers, start_at + 500)):
                user = await identity.create_user(
                    s,
                    email=f"buyer{i}@bench.example",
                    password=secrets.token_urlsafe(16),
                    role="customer",
                    name=f"Buyer {i}",
                )
                tokens.append(await identity.issue_token(s, user.id, 24 * 3600))
    return hot, regular, tokens


async def make_sale(db: Any, variant: str, units: int) -> str:
    from mercato.db import utcnow
    from mercato.flashsale import service as flashsale

    now = utcnow()
    async with db.transaction() as uow:
        sale = await flashsale.schedule_sale(
            uow,
            flashsale.NewSale(
                title="Bench drop",
                variants=[(variant, units)],
                price=1999,
                currency=CURRENCY,
                starts_at=now + timedelta(seconds=2),
                ends_at=now + timedelta(hours=1),
                admission_rate=1_000_000,
                per_customer_limit=1,
            ),
        )
    return sale.id


SENDING: asyncio.Semaphore | None = None
"""At most ``--connections`` requests in flight per client process; a buyer's join is timed
from the moment one of them is free to send it (and also from the buyer's arrival)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]
    retry_after: float = 1.0


async def send(client: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    async with client.request(method, url, **kwargs) as r:
        body = await r.json(content_type=None) if r.content_length != 0 else {}
        wait = r.headers.get("Retry-After", "1")
        return Answer(
            r.status,
            body if isinstance(body, dict) else {"items": body},
            float(wait) if wait.isdigit() else 1.0,
        )


async def call(
    client: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    unavailable: int = 0,
    **kwargs: Any,
) -> Answer:
    """The request, sent again on a dropped connection (every call here is idempotent: the
    waiting room's, the polls, and the checkouts by their Idempotency-Key), and up to
    ``unavailable`` times more on a 503 after its ``Retry-After``, as the sale's page does."""
    assert SENDING is not None
    dropped = 0
    while True:
        try:
            async with SENDING:
                answer = await send(client, method, url, **kwargs)
        except (TimeoutError, aiohttp.ClientConnectionError):
            dropped += 1
            if dropped == 5:
                raise
            await asyncio.sleep(0.05)
            continue
        if answer.status != 503 or unavailable <= 0:
            return answer
        unavailable -= 1
        await asyncio.sleep(min(5.0, answer.retry_after))


async def flash_buyer(
    client: aiohttp.ClientSession, phase: Phase, sale: str, token: str, at: float, t0: float
) -> None:
    """Join, poll when the server says (``poll_after_seconds``, as the sale's page does), check
    out once admitted and poll the purchase until it is an order (as often as its page does)."""
    from mercato.web.shop.flash_checkout import PURCHASE_POLL_SECONDS

    await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
    headers = {"Authorization": f"Bearer {token}"}
    base = f"/api/flash-sales/{sale}"
    assert SENDING is not None
    marks: dict[str, float] = {"arrive": at}
    phase.timeline.append(marks)
    try:
        async with SENDING:  # timed from the moment a connection is free to send it
            started = time.perf_counter()
            r = await send(client, "POST", f"{base}/queue", headers=headers)
            phase.joins.append(time.perf_counter() - started)
            phase.joins_from_arrival.append(time.perf_counter() - (t0 + at))
    except (TimeoutError, aiohttp.ClientConnectionError):
        r = await call(client, "POST", f"{base}/queue", headers=headers)
    if r.status == 503:
        r = await call(client, "POST", f"{base}/queue", headers=headers, unavailable=5)
    state = r.body if r.status == 200 else {"state": f"join {r.status}"}
    marks["joined"] = time.perf_counter() - t0
    marks["polls"] = 0
    while state.get("state") == "waiting":
        marks["polls"] += 1
        await asyncio.sleep(float(state.get("poll_after_seconds", 1)))
        r = await call(client, "GET", f"{base}/queue/me", headers=headers, unavailable=5)
        state = r.body if r.status == 200 else {"state": "waiting", "poll_after_seconds": 1}
    if state.get("state") != "admitted":
        phase.outcomes[str(state.get("state"))] += 1
        return
    admitted = time.perf_counter()
    marks["admitted_seen"] = admitted - t0
    phase.first_checkout = min(phase.first_checkout, admitted)
    body = {
        "admission_token": state["admission_token"],
        "shipping_address": ADDRESS,
        "payment_token": "tok_visa",
    }
    key = {"Idempotency-Key": uuid.uuid4().hex}
    r = await call(
        client, "POST", f"{base}/checkout", json=body, headers={**headers, **key}, unavailable=5
    )
    if r.status != 202:
        phase.outcomes[f"checkout {r.status} {r.body.get('code')}"] += 1
        return
    poll = r.body["poll"]
    marks["enqueued"] = time.perf_counter() - t0
    while True:
        # As often as the purchase's page asks (a buyer's order is seen up to this much late,
        # so the flash orders/s are, if anything, understated).
        await asyncio.sleep(PURCHASE_POLL_SECONDS)
        found = (await call(client, "GET", poll, headers=headers, unavailable=5)).body
        if found["status"] in ("completed", "failed"):
            break
    if found["status"] == "completed":
        now = time.perf_counter()
        marks["ordered"] = now - t0
        phase.to_order.append(now - admitted)
        phase.order_times.append(now)
        phase.outcomes["ordered"] += 1
    else:
        phase.outcomes[f"failed {found['problem']['code']}"] += 1


async def regular_buyer(
    client: aiohttp.ClientSession, phase: Phase, variant: str, token: str, at: float, t0: float
) -> None:
    await asyncio.sleep(max(0.0, t0 + at - time.perf_counter()))
    headers = {"Authorization": f"Bearer {token}"}
    r = await call(
        client,
        "POST",
        "/api/cart/items",
        json={"variant_id": variant, "quantity": 1},
        headers=headers,
    )
    if r.status != 201:
        phase.outcomes[f"cart {r.status} {r.body.get('code')}"] += 1
        return
    started = time.perf_counter()
    phase.first_checkout = min(phase.first_checkout, started)
    r = await call(
        client,
        "POST",
        "/api/checkout",
        json=BODY,
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    if r.status == 201:
        now = time.perf_counter()
        phase.to_order.append(now - started)
        phase.order_times.append(now)
        phase.outcomes["ordered"] += 1
    else:
        phase.outcomes[f"checkout {r.status} {r.body.get('code')}"] += 1


def _crowd_part(
    name: str,
    flash: bool,
    target: str,
    tokens: list[str],
    arrivals: list[float],
    t0: float,
    base: str,
    connections: int,
) -> Phase:
    """One client process's share of the crowd (``t0`` on the machine's monotonic clock, which
    ``time.perf_counter`` reads in every process alike)."""
    return asyncio.run(_crowd_async(name, flash, target, tokens, arrivals, t0, base, connections))


async def _crowd_async(
    name: str,
    flash: bool,
    target: str,
    tokens: list[str],
    arrivals: list[float],
    t0: float,
    base: str,
    connections: int,
) -> Phase:
    global SENDING
    SENDING = asyncio.Semaphore(connections)
    phase = Phase(name)
    buyer = flash_buyer if flash else regular_buyer
    connector = aiohttp.TCPConnector(limit=connections, keepalive_timeout=3.0)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(base, connector=connector, timeout=timeout) as client:
        await asyncio.gather(
            *(
                buyer(client, phase, target, t, at, t0)
                for t, at in zip(tokens, arrivals, strict=True)
            )
        )
    return phase


async def crowd(
    phase: Phase, flash: bool, target: str, tokens: list[str], args: argparse.Namespace, pids: Any
) -> None:
    """The buyers, dealt round-robin over ``--clients`` processes of ``--connections`` /
    ``--clients`` connections each: one process playing thousands of buyers spends more time
    in its HTTP client (whose pool does work per connection for each request) than the server
    spends answering, and would measure itself."""
    rng = random.Random(5)
    arrivals = sorted(rng.uniform(0, args.arrival) for _ in tokens)
    n = max(1, args.clients)
    per_client = max(1, args.connections // n)
    before = (tree_cpu(pids[0]), tree_cpu(pids[1]), tree_cpu(pids[2]))
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n, mp_context=context) as pool:
        # Started (the interpreters up, the modules imported) before the clock starts.
        list(pool.map(time.sleep, [0.5] * n))
        t0 = time.perf_counter() + 1.0
        phase.t0_wall = time.time() + 1.0
        loop = asyncio.get_running_loop()
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool,
                    _crowd_part,
                    phase.name,
                    flash,
                    target,
                    tokens[i::n],
                    arrivals[i::n],
                    t0,
                    args.base,
                    per_client,
                )
                for i in range(n)
            )
        )
    after = (tree_cpu(pids[0]), tree_cpu(pids[1]), tree_cpu(pids[2]))
    for part in parts:
        phase.joins += part.joins
        phase.joins_from_arrival += part.joins_from_arrival
        phase.to_order += part.to_order
        phase.order_times += part.order_times
        phase.first_checkout = min(phase.first_checkout, part.first_checkout)
        phase.outcomes.update(part.outcomes)
        phase.timeline += part.timeline
    phase.api_cpu = (after[0] - before[0]) + (after[2] - before[2])
    phase.db_cpu = after[1] - before[1]
    phase.load = os.getloadavg()[0]


async def check(
    db: Any, sale: str, units: int, flash_orders: int, regular: int, unsure: int
) -> list[str]:
    """Once the server and the worker are stopped: the shop's recovery ends what they left
    (a checkout answered 503 after its payment, say), then the sale, the orders, the ledger and
    the charges must agree. A regular checkout recovery finishes is an order nobody was answered
    201 for."""
    from bench.common import finish_left_runs
    from mercato.checkout.workflow import CHECKOUT
    from mercato.flashsale import service as flashsale
    from mercato.inventory import service as inventory
    from mercato.orders import service as orders
    from mercato.payments import service as payments

    problems = []
    recovered = await finish_left_runs(db.url, SECRET_KEY)
    console.print(f"once stopped: {recovered}")
    if recovered.active:
        problems.append(f"{recovered.active} workflow runs still in progress after recovery")
    late = recovered.completed[CHECKOUT.name]
    async with db.transaction() as uow:
        found = await flashsale.get_sale(uow, sale)
        count = sum((await orders.count_by_status(uow)).values())
        ledger = await inventory.check_ledger(uow)
        charges = (await payments.sandbox_charge_summary(uow)).charges
    if found.sold != units:
        problems.append(f"sold {found.sold} of an allocation of {units}")
    if found.sold > units:
        problems.append("OVERSOLD")
    if flash_orders != found.sold:
        problems.append(f"{flash_orders} flash orders seen for {found.sold} units sold")
    # A checkout answered with an error while its payment went through (a 503 once the card
    # was charged) is finished by recovery: by the worker's own job during the run, or above.
    if not flash_orders + regular <= count <= flash_orders + regular + unsure:
        problems.append(
            f"{count} orders for {flash_orders} + {regular} answered, {unsure} checkouts "
            f"answered with an error that may have been placed by recovery ({late} after the stop)"
        )
    if ledger:
        problems.append(f"{len(ledger)} stock ledger differences")
    if charges != count:
        problems.append(f"{charges} live charges for {count} orders")
    return problems


def line(phase: Phase, units: int) -> str:
    return (
        f"{phase.name:>8}: orders {phase.orders}/{units}, {phase.per_second:6.1f} orders/s, "
        f"sold out in {phase.sellout_seconds:5.2f} s; to order p50 {pct(phase.to_order, 0.5):.0f} "
        f"ms p99 {pct(phase.to_order, 0.99):.0f} ms; PostgreSQL CPU "
        f"{phase.db_cpu / max(phase.orders, 1) * 1000:.1f} ms/order, API+worker CPU "
        f"{phase.api_cpu / max(phase.orders, 1) * 1000:.1f} ms/order; load {phase.load:.1f}; "
        f"{dict(phase.outcomes)}"
    )


async def main_async(args: argparse.Namespace) -> None:
    from tests.support.servers import PostgresServer, RedisServer, free_port

    from mercato.db import Database

    load_before = os.getloadavg()[0]
    pg = PostgresServer.start()
    redis = RedisServer.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = await migrated_database(pg)
        db = Database(url, pool_size=4, max_overflow=4)
        try:
            started = time.perf_counter()
            hot, regular_variant, tokens = await seed(db, args.products, args.units, args.buyers)
            console.print(f"seeded in {time.perf_counter() - started:.1f}s")
            sale = await make_sale(db, hot, args.units)
            env = env_for(url, redis.url(), args)
            port = free_port()
            args.base = f"http://127.0.0.1:{port}"
            serve = ["serve", "--workers", str(args.workers), "--port", str(port)]
            procs.append(start([*serve, "--database", url], env, SERVER_LOG))
            procs.append(start(["worker"], env, WORKER_LOG))
            await wait_until_up(args.base, procs[0])
            await warm_up(args.base, sale)
            await asyncio.sleep(2.0)  # the sale starts
            pids = (procs[0].pid, pg.proc.pid, procs[1].pid)
            flash = Phase("flash")
            before = await server_times(args.base)
            await crowd(flash, True, sale, tokens, args, pids)
            after = await server_times(args.base)
            console.print(line(flash, args.units))
            console.print("  the server's own times (its request histogram):")
            for text in server_lines(before, after):
                console.print(text, highlight=False)
            TIMELINE.write_text(json.dumps({"t0": flash.t0_wall, "buyers": flash.timeline}))
            regular = Phase("regular")
            await crowd(regular, False, regular_variant, tokens, args, pids)
            console.print(line(regular, args.units))
            for text in server_lines(after, await server_times(args.base)):
                console.print(text, highlight=False)
            for p in procs:
                stop_server(p)
            procs.clear()
            unsure = sum(
                n
                for k, n in regular.outcomes.items()
                if k.startswith("checkout ") and (k.split()[1][0] == "5" or "timeout" in k)
            )
            problems = await check(db, sale, args.units, flash.orders, regular.orders, unsure)
        finally:
            await db.dispose()
    finally:
        for p in procs:
            stop_server(p)
        redis.stop()
        pg.stop()
    info = machine()
    ratio = flash.per_second / max(regular.per_second, 1e-9)
    console.print(
        f"{args.buyers} buyers arriving within {args.arrival:g} s, {args.units} units; "
        f"join p50 {pct(flash.joins, 0.5):.0f} ms p99 {pct(flash.joins, 0.99):.0f} ms "
        f"(from arrival: p50 {pct(flash.joins_from_arrival, 0.5):.0f} ms p99 "
        f"{pct(flash.joins_from_arrival, 0.99):.0f} ms; {args.clients} client processes); "
        f"flash {flash.per_second:.1f} orders/s vs regular {regular.per_second:.1f} orders/s: "
        f"x{ratio:.2f}"
    )
    console.print(
        f"{info['cpu']}, {info['cores']} cores, {info['ram']}, Python {info['python']}; load "
        f"average before {load_before:.1f}; mercato serve --workers {args.workers} + 1 worker"
    )
    if problems:
        console.print(f"[red]PROBLEMS: {problems}[/red]")
        raise SystemExit(1)
    console.print("checks: sold = allocation = flash orders, ledger balanced, one charge per order")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buyers", type=int, default=5000)
    parser.add_argument("--arrival", type=float, default=5.0, help="seconds they arrive within")
    parser.add_argument("--units", type=int, default=500, help="units for sale (both phases)")
    parser.add_argument("--workers", type=int, default=2, help="API processes of mercato serve")
    parser.add_argument("--pool-size", type=int, default=10, help="as the shop's default")
    parser.add_argument(
        "--max-overflow", type=int, default=20, help="connections beyond --pool-size (as default)"
    )
    parser.add_argument("--connections", type=int, default=400, help="client connections")
    parser.add_argument(
        "--clients", type=int, default=4, help="client processes the buyers are dealt over"
    )
    parser.add_argument("--products", type=int, default=300)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
