"""Looking at a bucket without taking (memory on SQLite, Redis on PostgreSQL), and ``throttle``'s
first refusal. Time is a fake clock handed to the limiter."""

from __future__ import annotations

import pytest

from mercato.problems import Problem
from mercato.ratelimit import (
    MemoryTokenBucket,
    Rate,
    RedisTokenBucket,
    TokenBucketLimiter,
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


async def test_peeking_takes_nothing_and_tells_the_wait(
    limiter: TokenBucketLimiter, clock: FakeClock
) -> None:
    assert await limiter.peek("k", 2, 0.1) == (True, 0.0)  # a bucket never used is full
    for _ in range(10):
        assert (await limiter.peek("k", 2, 0.1))[0]
    assert (await limiter.take("k", 2, 0.1))[0]
    assert (await limiter.take("k", 2, 0.1))[0]
    allowed, wait = await limiter.peek("k", 2, 0.1)
    assert not allowed and wait == pytest.approx(10.0)
    clock.now += 4
    allowed, wait = await limiter.peek("k", 2, 0.1)
    assert not allowed and wait == pytest.approx(6.0)
    clock.now += 6
    assert (await limiter.peek("k", 2, 0.1))[0]
    assert (await limiter.take("k", 2, 0.1))[0]  # the peeks took nothing
    assert not (await limiter.take("k", 2, 0.1))[0]


async def test_throttle_stops_at_the_first_refusal_and_charges_nothing_after_it(
    limiter: TokenBucketLimiter,
) -> None:
    first, second = Rate(1, 0.001), Rate(5, 0.001)
    await throttle(limiter, {"ip": first, "acct": second}, detail="no")
    for _ in range(3):
        with pytest.raises(Problem) as refused:
            await throttle(limiter, {"ip": first, "acct": second}, detail="no")
        assert refused.value.status == 429 and refused.value.code == "rate_limited"
        assert refused.value.headers is not None and "Retry-After" in refused.value.headers
    # "acct" paid for the one attempt that passed "ip", not for the three that did not.
    assert [(await limiter.take("acct", 5, 0.001))[0] for _ in range(5)] == [True] * 4 + [False]
