"""Giving tokens back (memory on SQLite, Redis on PostgreSQL): an attempt checked against its
allowance first and found not to count (a promo code that applied) returns what it took, never
beyond the bucket's capacity. Time is a fake clock handed to the limiter."""

from __future__ import annotations

import pytest

from mercato.problems import Problem
from mercato.ratelimit import (
    MemoryTokenBucket,
    Rate,
    RedisTokenBucket,
    TokenBucketLimiter,
    give_back,
    throttle,
)
from mercato.runtime import Runtime


class FakeClock:
    now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def limiter(backend: str, runtime: Runtime, clock: FakeClock) -> TokenBucketLimiter:
    if backend == "sqlite":
        return MemoryTokenBucket(clock=clock)
    assert runtime.redis is not None
    return RedisTokenBucket(runtime.redis, clock=clock)


async def test_a_token_given_back_can_be_taken_again(limiter: TokenBucketLimiter) -> None:
    for _ in range(3):
        assert (await limiter.take("k", 3, 0.01))[0]
    assert not (await limiter.take("k", 3, 0.01))[0]
    await limiter.refund("k", 3, 0.01)
    assert (await limiter.take("k", 3, 0.01))[0]
    assert not (await limiter.take("k", 3, 0.01))[0]


async def test_giving_back_never_exceeds_the_capacity(
    limiter: TokenBucketLimiter, clock: FakeClock
) -> None:
    assert (await limiter.take("k", 3, 0.01))[0]
    clock.now += 50  # half a token refilled meanwhile
    await limiter.refund("k", 3, 0.01, cost=3)
    assert [(await limiter.take("k", 3, 0.01))[0] for _ in range(4)] == [True, True, True, False]
    await limiter.refund("never-taken", 3, 0.01)  # a full (or forgotten) bucket stays full
    assert [(await limiter.take("never-taken", 3, 0.01))[0] for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_throttle_then_give_back_leaves_the_allowance_whole(
    limiter: TokenBucketLimiter,
) -> None:
    buckets = {"ip": Rate(2, 0.001), "cart": Rate(2, 0.001)}
    for _ in range(5):
        await throttle(limiter, buckets, detail="no")
        await give_back(limiter, buckets)
    await throttle(limiter, buckets, detail="no")
    await throttle(limiter, buckets, detail="no")
    with pytest.raises(Problem) as refused:
        await throttle(limiter, buckets, detail="no")
    assert refused.value.status == 429 and refused.value.headers is not None
