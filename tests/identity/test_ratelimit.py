"""The token buckets (memory on SQLite, Redis on PostgreSQL) and login throttling over HTTP.

Time is a fake clock handed to the limiter, so refill is shown without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI

from mercato.ratelimit import (
    MemoryTokenBucket,
    RedisTokenBucket,
    TokenBucketLimiter,
    limiter_for,
    retry_after_header,
)
from mercato.runtime import Runtime
from tests.identity.support import LOGIN_CAPACITY, PASSWORD, assert_problem, counts, register


class FakeClock:
    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(backend: str, runtime: Runtime, clock: FakeClock) -> TokenBucketLimiter:
    """The implementation each backend uses in production, on a fake clock."""
    if backend == "sqlite":
        return MemoryTokenBucket(clock=clock)
    assert runtime.redis is not None
    return RedisTokenBucket(runtime.redis, clock=clock)


def test_limiter_for_picks_redis_when_configured(backend: str, runtime: Runtime) -> None:
    limiter = limiter_for(runtime)
    expected = RedisTokenBucket if backend == "postgresql" else MemoryTokenBucket
    assert isinstance(limiter, expected)
    assert limiter_for(runtime) is limiter  # one per process


async def test_burst_then_refill(limiter: TokenBucketLimiter, clock: FakeClock) -> None:
    for _ in range(3):
        assert await limiter.take("k", 3, 0.5) == (True, 0.0)
    allowed, retry = await limiter.take("k", 3, 0.5)
    assert not allowed
    assert retry == pytest.approx(2.0)  # one token at 0.5/s

    clock.now += 1.0  # half a token: still refused, and the wait shrinks
    allowed, retry = await limiter.take("k", 3, 0.5)
    assert not allowed and retry == pytest.approx(1.0)

    clock.now += 1.0
    assert (await limiter.take("k", 3, 0.5))[0]
    assert not (await limiter.take("k", 3, 0.5))[0]

    clock.now += 3600  # refill never exceeds the capacity
    assert [(await limiter.take("k", 3, 0.5))[0] for _ in range(4)] == [True, True, True, False]


async def test_keys_are_independent_and_cost_counts(limiter: TokenBucketLimiter) -> None:
    assert (await limiter.take("a", 2, 1.0, cost=2))[0]
    assert not (await limiter.take("a", 2, 1.0))[0]
    assert (await limiter.take("b", 2, 1.0))[0]


async def test_bad_arguments_are_refused(limiter: TokenBucketLimiter) -> None:
    for capacity, refill, cost in ((0, 1.0, 1.0), (1, 0.0, 1.0), (1, 1.0, 2.0), (1, 1.0, 0.0)):
        with pytest.raises(ValueError):
            await limiter.take("k", capacity, refill, cost)


async def test_redis_buckets_expire_when_full_again(backend: str, runtime: Runtime) -> None:
    if backend != "postgresql":
        pytest.skip("Redis runs with the postgresql backend")
    assert runtime.redis is not None
    limiter = RedisTokenBucket(runtime.redis)  # Redis' own clock
    assert (await limiter.take("ttl", 10, 0.1))[0]
    ttl = await runtime.redis.ttl("mercato:ratelimit:ttl")
    assert 0 < ttl <= 11  # one token at 0.1/s refills in 10 s


async def test_memory_buckets_are_pruned(clock: FakeClock) -> None:
    limiter = MemoryTokenBucket(clock=clock, max_keys=50, prune_every=10_000)
    for i in range(40):
        await limiter.take(f"k{i}", 2, 1.0)
    assert len(limiter) == 40
    clock.now += 1.0  # every bucket has refilled: nothing left worth remembering
    assert limiter.prune() == 40
    assert len(limiter) == 0

    # A flood of distinct keys is capped; the most recently used survive.
    for i in range(120):
        await limiter.take(f"flood{i}", 2, 1.0)
    assert len(limiter) <= 50
    assert not (await limiter.take("flood119", 2, 1.0, cost=2))[0]


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(2.0) == "2"
    assert retry_after_header(2.1) == "3"


# --- login throttling over HTTP ------------------------------------------------------------


WRONG_PASSWORD = "not the password"


async def _login(c: httpx.AsyncClient, email: str, password: str = WRONG_PASSWORD) -> int:
    r = await c.post("/api/auth/login", json={"email": email, "password": password})
    return r.status_code


async def test_login_is_limited_per_ip(
    client_from: Callable[[str], httpx.AsyncClient], app: FastAPI
) -> None:
    attacker = client_from("127.0.0.7")
    bystander = client_from("127.0.0.8")
    await register(bystander, email="ada@example.com")
    statuses = [await _login(attacker, f"victim{i}@example.com") for i in range(LOGIN_CAPACITY)]
    assert statuses == [401] * LOGIN_CAPACITY

    before = await counts(app)
    r = await attacker.post(
        "/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD}
    )
    body = assert_problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    assert body["retry_after"] == int(r.headers["retry-after"])
    assert await counts(app) == before  # refused before the password was even looked at

    # Another address is not affected.
    assert await _login(bystander, "ada@example.com", PASSWORD) == 200


async def test_login_is_limited_per_account(
    client_from: Callable[[str], httpx.AsyncClient], app: FastAPI
) -> None:
    await register(client_from("127.0.0.9"), email="ada@example.com")
    # Many addresses, one account (a botnet guessing one password); the address of the e-mail
    # is normalised, so case and spaces do not open new buckets.
    spellings = ["ada@example.com", "ADA@example.com", " Ada@Example.com "]
    for i in range(LOGIN_CAPACITY):
        c = client_from(f"127.0.1.{i}")
        assert await _login(c, spellings[i % len(spellings)]) == 401
    fresh = client_from("127.0.2.1")
    r = await fresh.post("/api/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert_problem(r, 429, "rate_limited")
    assert int(r.headers["retry-after"]) >= 1
    # Other accounts from that fresh address are fine.
    assert await _login(fresh, "someone-else@example.com") == 401


async def test_successful_logins_count_too(client: httpx.AsyncClient) -> None:
    # The bucket bounds attempts, not failures: otherwise a known password would be a free
    # oracle for unlimited tries on other accounts between successes.
    await register(client)
    codes = [await _login(client, "ada@example.com", PASSWORD) for _ in range(LOGIN_CAPACITY)]
    assert codes == [200] * LOGIN_CAPACITY
    assert await _login(client, "ada@example.com", PASSWORD) == 429
