"""Checkout throughput over HTTP: ``mercato serve`` with 2 API processes on PostgreSQL + Redis.

Run from the repository root::

    python -m bench.checkout               # about 2 minutes
    python -m bench.checkout --profile     # and then where one checkout's time goes

It starts a private PostgreSQL and Redis (the test suite's servers: fsync and synchronous_commit
are off, so the figures show CPU and locking, not disk flushes), migrates, seeds a demo catalog
with 5,000 stocked variants ("spread") and one variant with a huge stock ("hot"), the demo
shipping/tax setup and one customer per virtual shopper, then starts ``mercato serve --workers 2``
(``--workers`` to change) on a free port. Each virtual shopper loops: add one unit to its cart
(``POST /api/cart/items``), then ``POST /api/checkout`` with a fresh Idempotency-Key. Scenarios:
16 and 64 shoppers, on spread stock and on the hot variant, ``--seconds`` each. Completed orders
per second count every 201 of the checkout over the whole loop; latencies are the checkout
request's alone.

Afterwards the numbers are checked against the database: orders = 201 answers, the stock ledger
balances, and the sandbox processor holds exactly one live charge per order.

``--profile`` then runs checkouts in-process (the same app over ASGI, no server) under
pyinstrument and prints the time per workflow step, the SQL statements and transactions of one
checkout request, and the profile's heaviest items.

Each run also prints the machine's load average: other work on the same cores lowers the
figures, so they are only comparable at a similar load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.common import (
    CURRENCY,
    ROOT,
    finish_left_runs,
    machine,
    migrated_database,
    seed_hot_and_spread,
)

SHOPPERS = (16, 64)
SPREAD_VARIANTS = 5_000
SPREAD_STOCK = 1_000_000
HOT_STOCK = 1_000_000_000
API_PROCESSES = 2
# Connections per API process (MERCATO_DB_POOL_SIZE, MERCATO_DB_MAX_OVERFLOW). No overflow: an
# overflow connection is closed when given back, so with more shoppers than pooled connections
# (the settings' default is 10 + 20 overflow) PostgreSQL would fork a backend for a good share
# of the transactions. Ten kept connections serve 32 shoppers per process; a checkout holds one
# only inside a short transaction, and waiting for one in the process costs nothing.
POOL_SIZE = 10
MAX_OVERFLOW = 0
BODY: dict[str, Any] = {
    "shipping_address": {
        "name": "Bench Shopper",
        "line1": "Benchstrasse 1",
        "city": "Berlin",
        "postal_code": "10115",
        "country": "DE",
    },
    "shipping_method": "standard",
    "payment_token": "tok_visa",
    "promo_code": None,
}

SECRET_KEY = secrets.token_urlsafe(32)
SERVER_LOG = ROOT / "bench" / "results" / "checkout-server.log"
MODULES = ("checkout", "payments", "inventory", "orders", "cart", "catalog", "identity")

console = Console()


@dataclass
class Run:
    scenario: str
    shoppers: int
    seconds: float
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    load: float = 0.0  # the machine's 1-minute load average at the end of the run
    # CPU seconds used during the run by the API processes, PostgreSQL and this load generator.
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds

    def cpu_ms_per_order(self, part: str) -> float:
        return self.cpu.get(part, 0.0) / max(len(self.latencies), 1) * 1000

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000


# --- seeding ---------------------------------------------------------------------------------


async def seed(db: Any, products: int, customers: int) -> tuple[str, list[str], list[str]]:
    """Catalog, stock, shipping/tax, customers; returns (hot variant, spread variants, tokens)."""
    from argon2 import PasswordHasher

    from mercato.checkout.demo import seed_checkout
    from mercato.identity import service as identity

    hot, spread = await seed_hot_and_spread(
        db,
        products=products,
        seed=7,
        spread_variants=SPREAD_VARIANTS,
        hot_stock=HOT_STOCK,
        spread_stock=SPREAD_STOCK,
        currency=CURRENCY,
    )
    await seed_checkout(db, currency=CURRENCY)
    # Real argon2id with the smallest cost: the bench measures checkouts, not logins.
    identity.PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    tokens = []
    async with db.transaction() as s:
        for i in range(customers):
            user = await identity.create_user(
                s,
                email=f"shopper{i}@bench.example",
                password=secrets.token_urlsafe(16),
                role="customer",
                name=f"Shopper {i}",
            )
            tokens.append(await identity.issue_token(s, user.id, 24 * 3600))
    return hot, spread, tokens


# --- the server ------------------------------------------------------------------------------


def start_server(
    url: str, redis_url: str, port: int, args: argparse.Namespace
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MERCATO_DB_POOL_SIZE": str(args.pool_size),
        "MERCATO_DB_MAX_OVERFLOW": str(args.max_overflow),
        "MERCATO_DATABASE_URL": url,
        "MERCATO_REDIS_URL": redis_url,
        "MERCATO_SECRET_KEY": SECRET_KEY,
        "MERCATO_CURRENCY": CURRENCY,
        "PYTHONPATH": str(ROOT / "src"),
    }
    command = [
        sys.executable,
        "-m",
        "mercato.cli",
        "serve",
        "--workers",
        str(args.workers),
        "--port",
        str(port),
        "--database",
        url,
    ]
    # The server's log goes to a file: a pipe nobody reads fills up, and a worker blocked on
    # writing its log stops answering.
    SERVER_LOG.parent.mkdir(parents=True, exist_ok=True)
    with SERVER_LOG.open("wb") as log_file:
        return subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )


def server_log_tail(limit: int = 3000) -> str:
    try:
        return SERVER_LOG.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


async def wait_until_up(base: str, proc: subprocess.Popen[bytes], within: float = 90) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"mercato serve exited early:\n{server_log_tail()}")
            try:
                if (await client.get("/api/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("mercato serve did not come up")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- CPU accounting --------------------------------------------------------------------------


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system) used so far by process ``root`` and its descendants, those
    that exited and were waited for included (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = defaultdict(list)
    used: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime, stime, cutime, cstime are fields 14-17 of proc(5); ppid is field 4.
        children[int(fields[1])].append(int(entry))
        used[int(entry)] = sum(int(f) for f in fields[11:15]) / tick
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += used.get(pid, 0.0)
        todo.extend(children.get(pid, ()))
    return total


def cpu_now(server: int, database: int) -> dict[str, float]:
    return {
        "api": tree_cpu(server),
        "db": tree_cpu(database),
        "client": time.process_time(),
    }


# --- driving ---------------------------------------------------------------------------------


async def drive(
    client: httpx.AsyncClient,
    scenario: str,
    variants: list[str],
    tokens: list[str],
    shoppers: int,
    seconds: float,
) -> Run:
    run = Run(scenario, shoppers, seconds)
    deadline = time.perf_counter() + seconds

    async def shopper(n: int) -> None:
        rng = random.Random(n)
        headers = {"Authorization": f"Bearer {tokens[n]}"}
        while time.perf_counter() < deadline:
            variant = variants[rng.randrange(len(variants))]
            try:
                added = await client.post(
                    "/api/cart/items", json={"variant_id": variant, "quantity": 1}, headers=headers
                )
            except httpx.TransportError as exc:
                run.failures[f"cart {type(exc).__name__}"] += 1
                continue
            if added.status_code != 201:
                run.failures[f"cart {added.status_code} {added.json().get('code')}"] += 1
                continue
            started = time.perf_counter()
            try:
                placed = await client.post(
                    "/api/checkout",
                    json=BODY,
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                )
            except httpx.TransportError as exc:
                # The answer is lost, not necessarily the order: verify() will say.
                run.failures[f"checkout {type(exc).__name__}"] += 1
                continue
            elapsed = time.perf_counter() - started
            if placed.status_code == 201:
                run.latencies.append(elapsed)
            else:
                run.failures[f"checkout {placed.status_code} {placed.json().get('code')}"] += 1

    started = time.perf_counter()
    await asyncio.gather(*(shopper(n) for n in range(shoppers)))
    run.seconds = time.perf_counter() - started
    run.load = os.getloadavg()[0]
    return run


async def verify(db: Any, expected_orders: int) -> list[str]:
    """What disagrees between the answers, the orders, the stock ledger and the processor."""
    from mercato.inventory import service as inventory
    from mercato.orders import service as orders
    from mercato.payments import service as payments

    problems = []
    async with db.transaction() as uow:
        order_count = sum((await orders.count_by_status(uow)).values())
        differences = await inventory.check_ledger(uow)
        summary = await payments.sandbox_charge_summary(uow)
    if order_count != expected_orders:
        problems.append(f"{order_count} orders for {expected_orders} answers 201")
    if differences:
        problems.append(f"{len(differences)} stock ledger differences")
    if summary.charges != order_count:
        problems.append(f"{summary.charges} live charges for {order_count} orders")
    return problems


# --- the profile -----------------------------------------------------------------------------


async def profile(
    url: str, redis_url: str, variants: list[str], token: str, count: int, show_sql: bool
) -> None:
    from pyinstrument import Profiler
    from sqlalchemy import event

    from mercato.app import create_app
    from mercato.checkout.workflow import CHECKOUT
    from mercato.settings import Settings

    settings = Settings(
        database_url=url, redis_url=redis_url, secret_key=SECRET_KEY, currency=CURRENCY
    )
    app = create_app(settings)
    steps: list[tuple[str, float]] = []
    durations: dict[str, float] = defaultdict(float)
    # Each mark is taken when a step's own work is done: a transactional step's progress write
    # and commit count towards the next one (the last one's towards "answer").
    order = ["prepare + reserve", "authorize", "place_order", "answer"]
    names = {"reserve": "prepare + reserve", "authorize": "authorize", "place_order": "place_order"}
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(99)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            counting = [False]  # count SQL of the checkout request only
            cart_counting = [False]
            recording = [True]  # only the first measured iteration, for --sql

            async def one(measure: bool) -> None:
                variant = variants[rng.randrange(len(variants))]
                cart_counting[0] = measure
                r = await client.post(
                    "/api/cart/items", json={"variant_id": variant, "quantity": 1}, headers=headers
                )
                cart_counting[0] = False
                assert r.status_code == 201, r.text
                steps.clear()
                counting[0] = measure
                start = time.perf_counter()
                r = await client.post(
                    "/api/checkout",
                    json=BODY,
                    headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                )
                end = time.perf_counter()
                counting[0] = False
                assert r.status_code == 201, r.text
                if measure:
                    recording[0] = False
                    last = start
                    for name, at in steps:
                        durations[names[name]] += at - last
                        last = at
                    durations["answer"] += end - last

            untimed = _time_steps(CHECKOUT, steps)
            for _ in range(20):
                await one(False)
            statements: Counter[str] = Counter()
            cart_statements = [0]
            transactions = [0]
            first: list[str] = []  # the statements of the first measured iteration

            def count_statement(*args: Any) -> None:
                if counting[0]:
                    statements[_module_of(str(args[2]))] += 1
                elif cart_counting[0]:
                    cart_statements[0] += 1
                else:
                    return
                if show_sql and recording[0]:
                    kind = "checkout" if counting[0] else "add to cart"
                    first.append(f"{kind:11} {' '.join(str(args[2]).split())[:150]}")

            def count_commit(*_args: Any) -> None:
                if counting[0]:
                    transactions[0] += 1

            engine = app.state.runtime.db.engine.sync_engine
            event.listen(engine, "before_cursor_execute", count_statement)
            event.listen(engine, "commit", count_commit)
            started = time.perf_counter()
            for _ in range(count):
                await one(True)
            plain = (time.perf_counter() - started) / count
            event.remove(engine, "before_cursor_execute", count_statement)
            event.remove(engine, "commit", count_commit)
            profiler = Profiler(async_mode="enabled")
            started = time.perf_counter()
            with profiler:
                for _ in range(count):
                    await one(False)
            wall = (time.perf_counter() - started) / count
            object.__setattr__(CHECKOUT, "steps", untimed)
    checkout_ms = sum(durations.values()) / count * 1000
    table = Table(title=f"One checkout in-process (mean of {count}, sequential)")
    table.add_column("step")
    table.add_column("ms", justify="right")
    table.add_column("share", justify="right")
    for step in order:
        ms = durations[step] / count * 1000
        table.add_row(step, f"{ms:.2f}", f"{ms / checkout_ms:.0%}")
    table.add_row("checkout request", f"{checkout_ms:.2f}", "100%")
    console.print(table)
    console.print(
        f"add to cart + checkout: {plain * 1000:.1f} ms per iteration ({wall * 1000:.1f} ms "
        "under the profiler)"
    )
    by_module = ", ".join(f"{k} {n / count:.0f}" for k, n in statements.most_common())
    console.print(
        f"one checkout request: {sum(statements.values()) / count:.0f} SQL statements in "
        f"{transactions[0] / count:.0f} transactions; statements by module: {by_module}; "
        f"one add to cart: {cart_statements[0] / count:.0f} SQL statements"
    )
    for line in first:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    session = profiler.last_session
    assert session is not None
    report_profile(session.root_frame(), count)


def _time_steps(workflow: Any, marks: list[tuple[str, float]]) -> Any:
    """Note the time each step of ``workflow`` ends at in ``marks``; returns the steps as they
    were, to be put back."""
    from dataclasses import replace

    def marking(name: str, run: Any) -> Any:
        async def timed(ctx: Any, state: Any) -> None:
            await run(ctx, state)
            marks.append((name, time.perf_counter()))

        return timed

    original = workflow.steps
    timed = tuple(replace(s, run=marking(s.name, s.run)) for s in original)
    object.__setattr__(workflow, "steps", timed)
    return original


def _module_of(statement: str) -> str:
    """Which module's table a statement touches (by the table-name prefix)."""
    words = statement.replace("(", " ").replace(",", " ").split()
    if words and words[0].upper() in ("SAVEPOINT", "RELEASE", "ROLLBACK"):
        return "inventory"
    for word in words:
        head = word.strip('"').split(".")[0]
        if head.startswith("outbox_"):
            return "outbox (events)"
        if head.startswith("workflow_"):
            return "workflows (the run's row)"
        for module in (
            "checkout",
            "payments",
            "inventory",
            "orders",
            "cart",
            "catalog",
            "identity",
        ):
            if head.startswith(module + "_"):
                return module
    return "inventory" if "pg_advisory" in statement else "other"


def _area(path: str | None) -> str:
    if not path:
        return "other"
    p = path.replace("\\", "/")
    for marker, name in (
        ("/mercato/", "mercato (application code)"),
        ("/sqlalchemy/", "SQLAlchemy (statement building, results)"),
        ("/asyncpg/", "asyncpg (driver)"),
        ("/pydantic", "pydantic"),
        ("/fastapi/", "FastAPI / Starlette"),
        ("/starlette/", "FastAPI / Starlette"),
        ("/httpx/", "httpx (the bench client)"),
        ("/httpcore/", "httpx (the bench client)"),
        ("/redis/", "redis client"),
        ("/argon2/", "argon2"),
        ("asyncio", "asyncio event loop"),
    ):
        if marker in p:
            return name
    return "other libraries / stdlib"


def report_profile(root: Any, count: int) -> None:
    from pyinstrument.frame import AWAIT_FRAME_IDENTIFIER

    areas: Counter[str] = Counter()
    functions: Counter[str] = Counter()

    def visit(frame: Any, inherited: str, where: str) -> None:
        if frame.identifier == AWAIT_FRAME_IDENTIFIER:
            areas["waiting on I/O (PostgreSQL, Redis round trips)"] += frame.time
            return
        area = inherited
        if frame.file_path:
            area = _area(frame.file_path)
            short = str(frame.file_path).split("site-packages/")[-1].split("/src/")[-1]
            where = f"{frame.function} ({short}:{frame.line_no})"
        # Own time sits in synthetic "[self]" children (and in whatever the children miss).
        own = frame.time - sum(c.time for c in frame.children)
        if own > 0:
            areas[area] += own
            functions[where] += own
        for child in frame.children:
            visit(child, area, where)

    visit(root, "other", "?")
    total = sum(areas.values())
    table = Table(title="Where the time goes (pyinstrument, per checkout loop iteration)")
    table.add_column("area")
    table.add_column("ms", justify="right")
    table.add_column("share", justify="right")
    for area, seconds in areas.most_common():
        table.add_row(area, f"{seconds / count * 1000:.2f}", f"{seconds / total:.0%}")
    console.print(table)
    top = Table(title="Heaviest functions by own time")
    top.add_column("function")
    top.add_column("ms", justify="right")
    for where, seconds in functions.most_common(25):
        top.add_row(where, f"{seconds / count * 1000:.2f}")
    console.print(top)


# --- main ------------------------------------------------------------------------------------


async def main_async(args: argparse.Namespace) -> None:
    from sqlalchemy import text
    from tests.support.servers import PostgresServer, RedisServer, free_port

    from mercato.db import Database

    shoppers = [int(s) for s in args.shoppers.split(",") if s.strip()]
    load_before = os.getloadavg()[0]  # other work on the machine, before this benchmark's
    pg = PostgresServer.start()
    redis = RedisServer.start()
    proc: subprocess.Popen[bytes] | None = None
    try:
        url = await migrated_database(pg)
        db = Database(url, pool_size=4, max_overflow=4)
        try:
            started = time.perf_counter()
            hot, spread, tokens = await seed(db, args.products, max(shoppers, default=0) + 1)
            console.print(f"seeded in {time.perf_counter() - started:.1f}s")
            async with db.transaction() as uow:
                pg_version = str((await uow.execute(text("SHOW server_version"))).scalar_one())

            runs: list[Run] = []
            port = free_port()
            proc = start_server(url, redis.url(), port, args) if shoppers else None
            base = f"http://127.0.0.1:{port}"
            if proc is not None:
                await wait_until_up(base, proc)
            # Idle connections expire before uvicorn's 5 s keep-alive closes them: reusing one
            # the server is closing at that moment is a ReadError, not a failed checkout.
            limits = httpx.Limits(
                max_connections=max(shoppers, default=0) + 8, keepalive_expiry=3.0
            )
            async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
                if shoppers:
                    await drive(
                        client,
                        "warm-up",
                        spread,
                        tokens,
                        min(16, len(tokens)),
                        min(3.0, args.seconds),
                    )
                for scenario, variants in (("spread", spread), ("hot", [hot])):
                    for n in shoppers:
                        assert proc is not None
                        before = cpu_now(proc.pid, pg.proc.pid)
                        result = await drive(client, scenario, variants, tokens, n, args.seconds)
                        after = cpu_now(proc.pid, pg.proc.pid)
                        result.cpu = {k: after[k] - before[k] for k in after}
                        runs.append(result)
                        console.print(
                            f"{scenario:>6} x{n:<3} {result.per_second:7.1f} orders/s  "
                            f"p50 {result.percentile(0.5):6.1f} ms  "
                            f"p99 {result.percentile(0.99):6.1f} ms  "
                            f"failed {dict(result.failures) or 0}  load {result.load:.1f}  "
                            f"CPU ms/order: API {result.cpu_ms_per_order('api'):.1f}, "
                            f"PostgreSQL {result.cpu_ms_per_order('db'):.1f}, "
                            f"load generator {result.cpu_ms_per_order('client'):.1f}"
                        )
            if proc is not None:
                stop_server(proc)
                proc = None
            # What the server left mid-way (a checkout answered 503 after its payment) is ended
            # by the shop's recovery before anything is counted.
            console.print(f"once stopped: {await finish_left_runs(url, SECRET_KEY)}")
            # Every completed checkout (answered 201, or finished by recovery) is an order.
            async with db.transaction() as uow:
                from mercato.checkout import service as checkout

                by_status = await checkout.count_by_status(uow)
            problems = await verify(db, by_status.get("completed", 0))
            if by_status.keys() - {"completed", "failed"}:
                problems.append(f"checkouts left in progress: {by_status}")
            if args.profile:
                await profile(
                    url, redis.url(), spread, tokens[-1], args.profile_checkouts, args.sql
                )
        finally:
            await db.dispose()
    finally:
        if proc is not None:
            stop_server(proc)
        redis.stop()
        pg.stop()
    info = {**machine(), "postgresql": pg_version, "load_before": f"{load_before:.1f}"}
    report(runs, info, problems, args.seconds, args.workers)


def report(
    runs: list[Run], info: dict[str, str], problems: list[str], seconds: float, workers: int
) -> None:
    labels = {"hot": "1 hot variant", "spread": f"{SPREAD_VARIANTS:,} variants"}
    table = Table(
        title=f"POST /api/checkout over HTTP, mercato serve --workers {workers}, PostgreSQL"
    )
    for column in ("stock", "shoppers", "orders/s", "p50 ms", "p99 ms", "failed", "load"):
        table.add_column(column, justify="left" if column == "stock" else "right")
    rows = []
    for r in runs:
        row = [
            labels[r.scenario],
            str(r.shoppers),
            f"{r.per_second:,.1f}",
            f"{r.percentile(0.5):.1f}",
            f"{r.percentile(0.99):.1f}",
            str(sum(r.failures.values())),
            f"{r.load:.1f}",
        ]
        rows.append(row)
        table.add_row(*row)
    console.print(table)
    checked = "; ".join(problems) if problems else "all consistent"
    console.print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; "
        f"PostgreSQL {info['postgresql']}; Python {info['python']}. {seconds:g} s per run. "
        f"Orders vs answers, stock ledger, sandbox charges: {checked}."
    )
    print()
    print("| stock | shoppers | orders/s | p50 ms | p99 ms | load | CPU ms/order (API + DB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row, r in zip(rows, runs, strict=True):
        cpu = f"{r.cpu_ms_per_order('api'):.1f} + {r.cpu_ms_per_order('db'):.1f}"
        print(f"| {' | '.join(row[:5] + row[6:])} | {cpu} |")
    print()
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; PostgreSQL "
        f"{info['postgresql']} (private test server: fsync and synchronous_commit off) and Redis; "
        f"Python {info['python']}; `mercato serve --workers {workers}`, the load generator "
        f"and the database share the machine. Each run {seconds:g} s; after all runs: {checked}. "
        f"Load average (1 min) before the benchmark started: {info['load_before']}; the load "
        "column is the load at the end of each run, this benchmark included."
    )
    if problems:
        raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument(
        "--products", type=int, default=3000, help="demo products to generate (variants from them)"
    )
    parser.add_argument(
        "--shoppers",
        default=",".join(map(str, SHOPPERS)),
        help='comma-separated shopper counts ("" to only profile)',
    )
    parser.add_argument(
        "--workers", type=int, default=API_PROCESSES, help="API processes of mercato serve"
    )
    parser.add_argument(
        "--pool-size", type=int, default=POOL_SIZE, help="database connections per API process"
    )
    parser.add_argument(
        "--max-overflow",
        type=int,
        default=MAX_OVERFLOW,
        help="extra connections per API process beyond --pool-size (closed when given back)",
    )
    parser.add_argument("--profile", action="store_true", help="profile in-process checkouts")
    parser.add_argument("--profile-checkouts", type=int, default=100)
    parser.add_argument(
        "--sql", action="store_true", help="with --profile: print one iteration's SQL statements"
    )
    args = parser.parse_args()
    for path in (ROOT, ROOT / "src"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
