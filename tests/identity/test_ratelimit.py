"""The token buckets (memory on SQLite, Redis on PostgreSQL): take, refund, refill, expiry, and
exact counts under many concurrent callers.

Time is a fake clock handed to the limiter, so refill is shown without sleeping. Login
throttling over HTTP is in test_login_limits.py.
"""

from __future__ import annotations

import asyncio

import pytest

from mercato.ratelimit import (
    FallbackTokenBucket,
    MemoryTokenBucket,
    RedisTokenBucket,
    TokenBucketLimiter,
    limiter_for,
    retry_after_header,
)
from mercato.runtime import Runtime
from mercato.settings import Settings


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
    if backend == "postgresql":
        # Redis's buckets, and this process's own while Redis cannot be reached.
        assert isinstance(limiter, FallbackTokenBucket)
        assert isinstance(limiter.shared, RedisTokenBucket)
    else:
        assert isinstance(limiter, MemoryTokenBucket)
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
        with pytest.raises(ValueError):
            await limiter.refund("k", capacity, refill, cost)


async def test_refund_gives_tokens_back_never_beyond_the_capacity(
    limiter: TokenBucketLimiter, clock: FakeClock
) -> None:
    await limiter.refund("fresh", 3, 0.5)  # a bucket never used is full: nothing to give back
    assert [(await limiter.take("fresh", 3, 0.5))[0] for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]
    await limiter.refund("fresh", 3, 0.5, cost=2)
    assert (await limiter.take("fresh", 3, 0.5, cost=2))[0]
    assert not (await limiter.take("fresh", 3, 0.5))[0]

    clock.now += 2.0  # one token refilled, then three given back: capped at three
    await limiter.refund("fresh", 3, 0.5, cost=3)
    assert (await limiter.take("fresh", 3, 0.5, cost=3))[0]
    allowed, retry = await limiter.take("fresh", 3, 0.5)
    assert not allowed and retry == pytest.approx(2.0)


async def test_concurrent_takes_and_refunds_lose_no_update(limiter: TokenBucketLimiter) -> None:
    """Many callers at once, as concurrent logins are: 40 take a token and keep it (failed
    attempts), 50 take one and give it back (successes); fewer than the Redis client's 100
    connections. What is left is exactly the capacity
    less what was kept: no take or refund is lost or counted twice."""

    async def keep() -> bool:
        return (await limiter.take("busy", 60, 1e-6))[0]

    async def give_back() -> bool:
        allowed, _ = await limiter.take("busy", 60, 1e-6)
        await asyncio.sleep(0)
        if allowed:
            await limiter.refund("busy", 60, 1e-6)
        return allowed

    results = await asyncio.gather(*[keep() for _ in range(40)], *[give_back() for _ in range(50)])
    kept = sum(results[:40])
    assert (await limiter.take("busy", 60, 1e-6, cost=60 - kept))[0]
    assert not (await limiter.take("busy", 60, 1e-6))[0]


async def test_several_buckets_in_one_take_stop_at_the_first_refusal(
    limiter: TokenBucketLimiter, backend: str, runtime: Runtime
) -> None:
    """An address's bucket then a customer's, as the waiting room takes them (one round trip
    on Redis): a refusal charges neither the refusing bucket nor any after it."""
    assert await limiter.take_each([("ip", 2, 1e-6), ("cus", 5, 1e-6)]) == (2, 0.0)
    assert await limiter.take_each([("ip", 2, 1e-6), ("cus", 5, 1e-6)]) == (2, 0.0)
    refused, wait = await limiter.take_each([("ip", 2, 1e-6), ("cus", 5, 1e-6)])
    assert refused == 0 and wait > 0
    # "cus" was charged twice, not three times: three left of five.
    assert (await limiter.take("cus", 5, 1e-6, cost=3))[0]
    assert not (await limiter.take("cus", 5, 1e-6))[0]
    # A bucket after a refusing one is not charged (given back on Redis).
    refused, _ = await limiter.take_each([("other", 4, 1e-6), ("cus", 5, 1e-6), ("last", 3, 1e-6)])
    assert refused == 1
    assert (await limiter.take("other", 4, 1e-6, cost=3))[0]  # charged once
    assert (await limiter.take("last", 3, 1e-6, cost=3))[0]  # never charged
    if backend == "postgresql":
        assert runtime.redis is not None
        await runtime.redis.script_flush()  # a restarted Redis: the script is loaded again
        assert await limiter.take_each([("fresh", 2, 1e-6), ("fresh2", 2, 1e-6)]) == (2, 0.0)
        assert (await limiter.take("fresh", 2, 1e-6))[0]
        assert not (await limiter.take("fresh", 2, 1e-6))[0]


async def test_redis_buckets_expire_when_full_again(backend: str, runtime: Runtime) -> None:
    if backend != "postgresql":
        pytest.skip("Redis runs with the postgresql backend")
    assert runtime.redis is not None
    limiter = RedisTokenBucket(runtime.redis)  # Redis' own clock
    assert (await limiter.take("ttl", 10, 0.1))[0]
    ttl = await runtime.redis.ttl("mercato:ratelimit:ttl")
    assert 0 < ttl <= 11  # one token at 0.1/s refills in 10 s
    await limiter.refund("ttl", 10, 0.1)
    assert not await runtime.redis.exists("mercato:ratelimit:ttl")  # full again: forgotten


async def test_more_concurrent_callers_than_redis_connections_wait_for_one(
    backend: str, settings: Settings
) -> None:
    """A burst beyond the pool's size queues for a connection instead of failing (a 500)."""
    if backend != "postgresql":
        pytest.skip("Redis runs with the postgresql backend")
    runtime = Runtime.from_settings(settings.model_copy(update={"redis_max_connections": 4}))
    try:
        limiter = limiter_for(runtime)
        results = await asyncio.gather(*(limiter.take("crowd", 1000, 1e-6) for _ in range(300)))
        assert all(allowed for allowed, _ in results)
        assert not (await limiter.take("crowd", 1000, 1e-6, cost=701))[0]  # exactly 300 taken
        assert (await limiter.take("crowd", 1000, 1e-6, cost=700))[0]
    finally:
        await runtime.close()


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
