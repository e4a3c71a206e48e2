"""Token-bucket rate limiting, shared by every module that needs to slow callers down.

A token bucket allows short bursts (up to ``capacity``) while holding the long-run rate to
``refill_per_second``, which suits both login throttling and per-customer flash-sale limits.
On the embedded default the buckets live in process memory; as soon as Redis is configured they
live there instead, because several API processes must share one count or each would grant the
full allowance.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from mercato.problems import Problem
from mercato.runtime import Runtime

Clock = Callable[[], float]
log = logging.getLogger("mercato.ratelimit")


class TokenBucketLimiter(Protocol):
    async def take(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        """Take ``cost`` tokens from bucket ``key``: (allowed, seconds until it would be)."""
        ...

    async def refund(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> None:
        """Give ``cost`` tokens back to bucket ``key`` (never beyond its capacity).

        For allowances that count only some outcomes (failed logins): take a token before the
        attempt, so that concurrent attempts cannot all slip through a check that nothing has
        charged yet, and give it back when the attempt turns out not to count.
        """
        ...

    async def take_each(self, buckets: Sequence[tuple[str, int, float]]) -> tuple[int, float]:
        """Take one token from each bucket (key, capacity, refill per second), in order, up to
        the first that refuses, which is not charged, nor any after it: (how many allowed,
        seconds until the refusing one would allow). ``len(buckets)`` means every one did."""
        ...

    async def peek(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        """Whether :meth:`take` would allow ``cost`` now, and the wait if not; takes nothing.

        For allowances spent only by an outcome known afterwards, where many honest attempts
        may be in flight at once (promo codes from one office): check before, take after.
        """
        ...


def _check_arguments(capacity: int, refill_per_second: float, cost: float) -> None:
    if capacity <= 0 or refill_per_second <= 0:
        raise ValueError("a token bucket needs a positive capacity and refill rate")
    if cost <= 0 or cost > capacity:
        raise ValueError("cost must be positive and no larger than the capacity")


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    full_at: float  # from then on the bucket equals a fresh one and can be forgotten


def _level(bucket: _Bucket | None, now: float, capacity: int, refill_per_second: float) -> float:
    """The tokens in a bucket at ``now``, refilled since it was last written (none: full)."""
    if bucket is None:
        return float(capacity)
    elapsed = max(0.0, now - bucket.updated)
    return min(float(capacity), bucket.tokens + elapsed * refill_per_second)


class MemoryTokenBucket:
    """Buckets in a dict, for one process.

    :meth:`take` has no suspension point, so it is atomic with respect to the event loop and
    needs no lock. The dict is kept in least-recently-used order; buckets that have refilled
    completely are pruned, and past ``max_keys`` the least recently used are dropped so that a
    flood of distinct keys cannot grow memory without bound.
    """

    def __init__(
        self, *, clock: Clock = time.monotonic, max_keys: int = 100_000, prune_every: int = 1024
    ) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._prune_every = prune_every
        self._buckets: dict[str, _Bucket] = {}
        self._takes = 0

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        _check_arguments(capacity, refill_per_second, cost)
        now = self._clock()
        tokens = _level(self._buckets.pop(key, None), now, capacity, refill_per_second)
        allowed = tokens >= cost
        retry_after = 0.0
        if allowed:
            tokens -= cost
        else:
            retry_after = (cost - tokens) / refill_per_second
        full_at = now + (capacity - tokens) / refill_per_second
        self._buckets[key] = _Bucket(tokens, now, full_at)
        self._takes += 1
        if self._takes % self._prune_every == 0 or len(self._buckets) > self._max_keys:
            self.prune(now)
        return allowed, retry_after

    async def take_each(self, buckets: Sequence[tuple[str, int, float]]) -> tuple[int, float]:
        for n, (key, capacity, refill) in enumerate(buckets):
            allowed, wait = await self.take(key, capacity, refill)
            if not allowed:
                return n, wait
        return len(buckets), 0.0

    async def refund(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> None:
        _check_arguments(capacity, refill_per_second, cost)
        bucket = self._buckets.get(key)
        if bucket is None:
            return  # forgotten buckets are full
        now = self._clock()
        tokens = min(float(capacity), _level(bucket, now, capacity, refill_per_second) + cost)
        full_at = now + (capacity - tokens) / refill_per_second
        self._buckets[key] = _Bucket(tokens, now, full_at)

    async def peek(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        _check_arguments(capacity, refill_per_second, cost)
        tokens = _level(self._buckets.get(key), self._clock(), capacity, refill_per_second)
        if tokens >= cost:
            return True, 0.0
        return False, (cost - tokens) / refill_per_second

    def prune(self, now: float | None = None) -> int:
        """Forget full buckets (and the least recently used beyond ``max_keys``)."""
        now = self._clock() if now is None else now
        before = len(self._buckets)
        self._buckets = {k: b for k, b in self._buckets.items() if b.full_at > now}
        excess = len(self._buckets) - self._max_keys
        if excess > 0:
            for key in list(self._buckets)[:excess]:
                del self._buckets[key]
        return before - len(self._buckets)


# What every script starts with: its arguments, the clock, and the bucket as stored (nil when
# there is none, which is a full bucket).
_READ_BUCKET = """
local capacity = tonumber(ARGV[1])
local refill = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
"""

# One round trip, atomic across every process: read, refill, take, write back, set the TTL.
# The clock is Redis' own (TIME) so that API processes with skewed clocks agree, unless the
# caller passes one (tests do, to move time without sleeping). Floats cross the Lua boundary as
# strings because Redis truncates Lua numbers to integers in replies.
_TAKE_SCRIPT = (
    _READ_BUCKET
    + """if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * refill)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / refill
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((capacity - tokens) / refill) + 1)
return {allowed, tostring(retry)}
"""
)

# The same refill, then ``cost`` tokens back; a bucket that is full again is simply deleted
# (a missing bucket is a full one).
_REFUND_SCRIPT = (
    _READ_BUCKET
    + """if tokens == nil or ts == nil then
  return 0
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * refill + cost)
if tokens >= capacity then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil((capacity - tokens) / refill) + 1)
return 1
"""
)

# The take's arithmetic without the write.
_PEEK_SCRIPT = (
    _READ_BUCKET
    + """if tokens == nil or ts == nil then
  return {1, '0'}
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * refill)
if tokens >= cost then
  return {1, '0'}
end
return {0, tostring((cost - tokens) / refill)}
"""
)


class RedisTokenBucket:
    """Buckets as Redis hashes, shared by every process; each expires once it would be full."""

    def __init__(
        self, redis: Redis, *, prefix: str = "mercato:ratelimit:", clock: Clock | None = None
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._clock = clock
        self._script = redis.register_script(_TAKE_SCRIPT)
        self._refund_script = redis.register_script(_REFUND_SCRIPT)
        self._peek_script = redis.register_script(_PEEK_SCRIPT)

    def _args(self, capacity: int, refill_per_second: float, cost: float) -> list[Any]:
        _check_arguments(capacity, refill_per_second, cost)
        now = "" if self._clock is None else repr(self._clock())
        return [capacity, repr(float(refill_per_second)), repr(float(cost)), now]

    async def take(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        args = self._args(capacity, refill_per_second, cost)
        allowed, retry = await self._script(keys=[self._prefix + key], args=args)
        return bool(int(allowed)), float(retry)

    async def take_each(self, buckets: Sequence[tuple[str, int, float]]) -> tuple[int, float]:
        """One round trip for every bucket (a pipeline; each key on its own, so the buckets
        may live on different nodes of a cluster), then, in the rare case one refused, a
        second that gives back what the buckets after it were charged."""
        if len(buckets) == 1:
            key, capacity, refill = buckets[0]
            allowed, wait = await self.take(key, capacity, refill)
            return (1 if allowed else 0), wait
        pipe = self._redis.pipeline(transaction=False)
        for key, capacity, refill in buckets:
            # EVALSHA itself: a pipeline given the script object asks SCRIPT EXISTS first, a
            # second round trip on every call. A bucket whose node does not know the script
            # yet (a restarted Redis) is taken alone, which loads it.
            pipe.evalsha(self._script.sha, 1, self._prefix + key, *self._args(capacity, refill, 1))
        answers = list(await pipe.execute(raise_on_error=False))
        for n, answer in enumerate(answers):
            if isinstance(answer, NoScriptError):
                key, capacity, refill = buckets[n]
                allowed, wait = await self.take(key, capacity, refill)
                answer = (int(allowed), str(wait))
            elif isinstance(answer, Exception):
                raise answer
            if not int(answer[0]):
                for (key, capacity, refill), later in zip(
                    buckets[n + 1 :], answers[n + 1 :], strict=True
                ):
                    if not isinstance(later, Exception) and int(later[0]):
                        await self.refund(key, capacity, refill)
                return n, float(answer[1])
        return len(buckets), 0.0

    async def refund(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> None:
        args = self._args(capacity, refill_per_second, cost)
        await self._refund_script(keys=[self._prefix + key], args=args)

    async def peek(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        args = self._args(capacity, refill_per_second, cost)
        allowed, retry = await self._peek_script(keys=[self._prefix + key], args=args)
        return bool(int(allowed)), float(retry)


class FallbackTokenBucket:
    """Redis's shared buckets, and this process's own while Redis cannot be reached: the shop
    keeps letting people log in and buy, and every limit still holds, per process, during the
    outage (failing open would lift them; failing closed would stop the shop)."""

    WARN_EVERY_SECONDS = 60.0

    def __init__(self, shared: TokenBucketLimiter, local: TokenBucketLimiter) -> None:
        self.shared = shared
        self.local = local
        self._warned = -math.inf

    def _fell_back(self, exc: RedisError) -> None:
        now = time.monotonic()
        if now - self._warned >= self.WARN_EVERY_SECONDS:
            self._warned = now
            log.warning("rate limits: Redis unreachable (%s); counting in this process", exc)

    async def take(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        try:
            return await self.shared.take(key, capacity, refill_per_second, cost)
        except RedisError as exc:
            self._fell_back(exc)
            return await self.local.take(key, capacity, refill_per_second, cost)

    async def take_each(self, buckets: Sequence[tuple[str, int, float]]) -> tuple[int, float]:
        try:
            return await self.shared.take_each(buckets)
        except RedisError as exc:
            self._fell_back(exc)
            return await self.local.take_each(buckets)

    async def refund(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> None:
        try:
            await self.shared.refund(key, capacity, refill_per_second, cost)
        except RedisError as exc:
            self._fell_back(exc)
            await self.local.refund(key, capacity, refill_per_second, cost)

    async def peek(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1
    ) -> tuple[bool, float]:
        try:
            return await self.shared.peek(key, capacity, refill_per_second, cost)
        except RedisError as exc:
            self._fell_back(exc)
            return await self.local.peek(key, capacity, refill_per_second, cost)


def limiter_for(runtime: Runtime) -> TokenBucketLimiter:
    """The process-wide limiter: Redis when configured (this process's memory while Redis is
    unreachable), memory otherwise (created once)."""
    limiter = runtime.extras.get("ratelimit")
    if limiter is None:
        limiter = (
            FallbackTokenBucket(RedisTokenBucket(runtime.redis), MemoryTokenBucket())
            if runtime.redis is not None
            else MemoryTokenBucket()
        )
        runtime.extras["ratelimit"] = limiter
    return cast(TokenBucketLimiter, limiter)


def retry_after_header(seconds: float) -> str:
    """``Retry-After`` takes whole seconds; round up so a client that obeys it is let in."""
    return str(max(1, math.ceil(seconds)))


@dataclass(frozen=True, slots=True)
class Rate:
    """A bucket's shape: a burst of ``capacity`` then ``refill_per_second`` in the long run."""

    capacity: int
    refill_per_second: float

    @classmethod
    def per_minute(cls, count: int, burst: int | None = None) -> Rate:
        return cls(burst if burst is not None else count, count / 60)

    @classmethod
    def per_hour(cls, count: int, burst: int | None = None) -> Rate:
        return cls(burst if burst is not None else count, count / 3600)


def client_ip(request: Request) -> str:
    """The caller's address for rate limiting: the socket peer.

    Behind a proxy, run uvicorn with ``--proxy-headers`` and a trusted ``--forwarded-allow-ips``
    so this is the real client. Reading X-Forwarded-For here instead would let any client choose
    its own bucket.
    """
    return request.client.host if request.client else "unknown"


def rate_limited(wait: float, detail: str) -> Problem:
    """The 429 problem every throttle answers, with ``Retry-After`` in whole seconds."""
    retry_after = retry_after_header(wait)
    return Problem(
        429,
        "rate_limited",
        detail,
        title="Too many requests",
        headers={"Retry-After": retry_after},
        retry_after=int(retry_after),
    )


async def throttle(limiter: TokenBucketLimiter, buckets: dict[str, Rate], *, detail: str) -> None:
    """Take one token from each bucket (key → rate), in order; raise 429 at the first empty one.

    Buckets after a refusing one are not charged: an attempt that was refused anyway must not
    spend anyone else's allowance (a throttled client would otherwise drain the shared buckets
    of the accounts or carts it names). Put the bucket the caller controls first (its IP).
    """
    wanted = [(key, rate.capacity, rate.refill_per_second) for key, rate in buckets.items()]
    allowed, wait = await limiter.take_each(wanted)
    if allowed < len(wanted):
        raise rate_limited(wait, detail)
