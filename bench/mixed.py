"""Shoppers browsing, searching, carting and checking out over HTTP, at rising concurrency,
until the 99th percentile of page and API latency passes 200 ms: the answer is how many
shoppers this machine serves at p99 < 200 ms.

Run from the repository root::

    python -m bench.mixed                          # steps 5, 10, 20, 40, 80, 160; 20 s each
    python -m bench.mixed --steps 5,10 --seconds 10
    python -m bench.mixed --think 2 --steps 20,40,80,160,320   # shoppers who read pages

It starts a private PostgreSQL and Redis (the test suite's servers: fsync off) on 127.0.0.1,
migrates, seeds a demo catalog (``--products``) with stock, the shipping/tax setup and one
customer (with a bearer token) per shopper, builds the search index, and starts
``mercato serve --workers 2`` and ``mercato worker``. Each simulated shopper loops over one
journey, as a browser would ask for it: the home page, a search page, a category page, a
product page (HTML), then adds that product to their cart (``POST /api/cart/items``) and one
journey in ``--checkout-every`` ends with ``POST /api/checkout``. Every request's latency
counts. A step runs ``--seconds`` with that many shoppers at once; by default there is no think
time (each shopper is a busy client, so real shoppers served are many more), ``--think S``
makes each shopper pause between 0.5 S and 1.5 S seconds after every request, as a person
reading the page would; the run stops after the first step
whose p99 passes ``--target-ms`` (or after the last step). Per step: requests/s, p50/p95/p99,
errors, and the page cache's hit ratio (summed over the API processes' counts in Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from bench.checkout import BODY
from bench.common import CURRENCY, ROOT, machine, migrated_database, seed_hot_and_spread
from bench.flashsale import start

console = Console(soft_wrap=True)
SECRET_KEY = secrets.token_urlsafe(32)
SERVER_LOG = ROOT / "bench" / "results" / "mixed-server.log"
WORKER_LOG = ROOT / "bench" / "results" / "mixed-worker.log"
HTML = {"accept": "text/html"}


@dataclass
class Step:
    shoppers: int
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    by_kind: dict[str, list[float]] = field(default_factory=dict)
    errors: Counter[str] = field(default_factory=Counter)
    checkouts: int = 0
    hit_ratio: float | None = None
    load: float = 0.0

    def record(self, kind: str, seconds: float) -> None:
        self.latencies.append(seconds)
        self.by_kind.setdefault(kind, []).append(seconds)

    def pct(self, p: float, values: list[float] | None = None) -> float:
        ordered = sorted(self.latencies if values is None else values)
        if not ordered:
            return 0.0
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Shop:
    products: list[tuple[str, str]]  # (product id, variant id)
    words: list[str]
    categories: list[str]
    tokens: list[str]


async def seed(db: Any, products: int, variants: int, customers: int) -> Shop:
    from argon2 import PasswordHasher

    from mercato.catalog import service as catalog
    from mercato.checkout.demo import seed_checkout
    from mercato.identity import service as identity

    _, spread = await seed_hot_and_spread(
        db,
        products=products,
        seed=11,
        spread_variants=variants,
        hot_stock=1_000_000,
        spread_stock=1_000_000,
        currency=CURRENCY,
    )
    await seed_checkout(db, currency=CURRENCY)
    identity.PASSWORD_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    tokens = []
    async with db.transaction() as uow:
        infos = await catalog.get_variants(uow, spread)
        tree = await catalog.get_category_tree(uow)
        for i in range(customers):
            user = await identity.create_user(
                uow,
                email=f"mixed{i}@bench.example",
                password=secrets.token_urlsafe(16),
                role="customer",
                name=f"Shopper {i}",
            )
            tokens.append(await identity.issue_token(uow, user.id, 24 * 3600))
    titles = {v.product_title for v in infos.values()}
    words = sorted({w.lower() for t in titles for w in t.split() if len(w) > 3})
    paths = [child.category.path for node in tree for child in [node, *node.children]]
    pairs = sorted({(infos[v].product_id, v) for v in spread})
    return Shop(pairs, words, paths, tokens)


async def build_index(url: str, data_dir: Path) -> None:
    from mercato.runtime import Runtime
    from mercato.search import service as search
    from mercato.settings import Settings

    runtime = Runtime.from_settings(
        Settings(database_url=url, data_dir=data_dir, secret_key=SECRET_KEY, currency=CURRENCY)
    )
    try:
        await search.reindex(runtime)
    finally:
        await runtime.close()


async def shopper(
    client: httpx.AsyncClient,
    step: Step,
    shop: Shop,
    n: int,
    deadline: float,
    every: int,
    think: float = 0.0,
) -> None:
    rng = random.Random(n * 7919 + step.shoppers)
    headers = {"Authorization": f"Bearer {shop.tokens[n]}"}
    journeys = 0

    async def timed(kind: str, method: str, url: str, **kwargs: Any) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            r = await client.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            step.errors[f"{kind} {type(exc).__name__}"] += 1
            return None
        step.record(kind, time.perf_counter() - started)
        if r.status_code >= 400:
            step.errors[f"{kind} {r.status_code}"] += 1
        if think > 0:
            await asyncio.sleep(min(think * rng.uniform(0.5, 1.5), deadline - time.perf_counter()))
        return r

    if think > 0:  # people arrive over a think time, not all in the same millisecond
        await asyncio.sleep(rng.uniform(0, think))
    while time.perf_counter() < deadline:
        journeys += 1
        product, variant = shop.products[rng.randrange(len(shop.products))]
        await timed("home", "GET", "/", headers=HTML)
        await timed("search", "GET", "/search", params={"q": rng.choice(shop.words)}, headers=HTML)
        await timed("category", "GET", f"/c/{rng.choice(shop.categories)}", headers=HTML)
        await timed("product", "GET", f"/p/{product}", headers=HTML)
        await timed(
            "cart",
            "POST",
            "/api/cart/items",
            json={"variant_id": variant, "quantity": 1},
            headers=headers,
        )
        if journeys % every == 0 and time.perf_counter() < deadline:
            r = await timed(
                "checkout",
                "POST",
                "/api/checkout",
                json=BODY,
                headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
            )
            if r is not None and r.status_code == 201:
                step.checkouts += 1


async def hit_counts(redis_url: str) -> tuple[int, int]:
    from redis.asyncio import Redis

    from mercato.cache import shared_cache_stats

    redis = Redis.from_url(redis_url)
    try:
        counts = await shared_cache_stats(redis)
    finally:
        await redis.aclose()
    return sum(c.hits for c in counts.values()), sum(c.misses for c in counts.values())


async def run_step(base: str, shop: Shop, shoppers: int, args: argparse.Namespace) -> Step:
    step = Step(shoppers)
    limits = httpx.Limits(max_connections=shoppers, max_keepalive_connections=shoppers)
    before = await hit_counts(args.redis_url)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        started = time.perf_counter()
        deadline = started + args.seconds
        await asyncio.gather(
            *(
                shopper(client, step, shop, n, deadline, args.checkout_every, args.think)
                for n in range(shoppers)
            )
        )
        step.seconds = time.perf_counter() - started
    step.load = os.getloadavg()[0]
    from mercato.cache import STATS_EVERY

    await asyncio.sleep(STATS_EVERY + 0.5)  # every process has published its counts
    after = await hit_counts(args.redis_url)
    hits, misses = after[0] - before[0], after[1] - before[1]
    step.hit_ratio = hits / (hits + misses) if hits + misses else None
    return step


def kinds(step: Step) -> str:
    return "       " + ", ".join(
        f"{kind} p50 {step.pct(0.5, v):.0f}/p99 {step.pct(0.99, v):.0f} ms"
        for kind, v in step.by_kind.items()
    )


def line(step: Step) -> str:
    ratio = f"{step.hit_ratio:.0%}" if step.hit_ratio is not None else "n/a"
    errors = sum(step.errors.values())
    return (
        f"{step.shoppers:>4} shoppers: {step.per_second:7.1f} req/s, p50 {step.pct(0.5):6.1f} ms, "
        f"p95 {step.pct(0.95):6.1f} ms, p99 {step.pct(0.99):6.1f} ms, {step.checkouts} orders, "
        f"{errors} errors, cache hits {ratio}, load {step.load:.1f}"
    )


async def main_async(args: argparse.Namespace) -> list[Step]:
    from tests.support.servers import PostgresServer, RedisServer, free_port

    from bench.checkout import stop_server, wait_until_up
    from mercato.db import Database

    load_before = os.getloadavg()[0]
    pg = PostgresServer.start()
    redis = RedisServer.start()
    args.redis_url = redis.url()
    procs: list[subprocess.Popen[bytes]] = []
    steps: list[Step] = []
    with tempfile.TemporaryDirectory(prefix="mercato-mixed-") as data_dir:
        try:
            url = await migrated_database(pg)
            db = Database(url, pool_size=4, max_overflow=4)
            try:
                started = time.perf_counter()
                shop = await seed(db, args.products, args.variants, max(*args.steps, 2))
            finally:
                await db.dispose()
            await build_index(url, Path(data_dir))
            console.print(f"seeded and indexed in {time.perf_counter() - started:.1f}s")
            env = {
                **os.environ,
                "MERCATO_DATABASE_URL": url,
                "MERCATO_REDIS_URL": redis.url(),
                "MERCATO_DATA_DIR": data_dir,
                "MERCATO_SECRET_KEY": SECRET_KEY,
                "MERCATO_CURRENCY": CURRENCY,
                "MERCATO_DB_POOL_SIZE": str(args.pool_size),
                "MERCATO_DB_MAX_OVERFLOW": "0",
                "MERCATO_PAGE_CACHE_TTL_SECONDS": str(args.cache_ttl),
                "PYTHONPATH": str(ROOT / "src"),
            }
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            serve = ["serve", "--workers", str(args.workers), "--port", str(port)]
            procs.append(start([*serve, "--database", url], env, SERVER_LOG))
            procs.append(start(["worker"], env, WORKER_LOG))
            await wait_until_up(base, procs[0])
            if args.warmup > 0:  # every process up, templates compiled, index readers open
                await run_step(
                    base, shop, 2, argparse.Namespace(**{**vars(args), "seconds": args.warmup})
                )
            for shoppers in args.steps:
                step = await run_step(base, shop, shoppers, args)
                steps.append(step)
                console.print(line(step))
                console.print(kinds(step))
                if step.pct(0.99) > args.target_ms:
                    break
        finally:
            for p in procs:
                stop_server(p)
            redis.stop()
            pg.stop()
    info = machine()
    served = [s.shoppers for s in steps if s.pct(0.99) <= args.target_ms]
    console.print(
        f"shoppers served at p99 < {args.target_ms:g} ms: {max(served) if served else 0} "
        f"({f'think time {args.think:g} s' if args.think else 'busy clients, no think time'}; "
        f"cache TTL {args.cache_ttl}s)"
    )
    console.print(
        f"{info['cpu']}, {info['cores']} cores, {info['ram']}, Python {info['python']}; load "
        f"average before {load_before:.1f}; mercato serve --workers {args.workers} + 1 worker"
    )
    return steps


def _steps(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--steps", type=_steps, default=[5, 10, 20, 40, 80, 160])
    p.add_argument("--seconds", type=float, default=20.0, help="length of each step")
    p.add_argument(
        "--think", type=float, default=0.0, help="mean pause after each request (s); 0: busy"
    )
    p.add_argument("--warmup", type=float, default=10.0, help="seconds of light load first")
    p.add_argument("--target-ms", type=float, default=200.0, help="the p99 to stay under")
    p.add_argument("--products", type=int, default=2000)
    p.add_argument("--variants", type=int, default=400, help="variants shoppers buy")
    p.add_argument("--checkout-every", type=int, default=5, help="one journey in N checks out")
    p.add_argument("--workers", type=int, default=2, help="API processes of mercato serve")
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--cache-ttl", type=int, default=60, help="page cache TTL; 0 turns it off")
    return p


def main() -> None:
    asyncio.run(main_async(parser().parse_args()))


if __name__ == "__main__":
    main()
