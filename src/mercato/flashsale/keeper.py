"""What the waiting room's rules need from the process: the gate, the admission pace, the
time windows, the secret that signs admission tokens and the per-caller limits.

Built once per runtime (:func:`keeper_for`); tests build their own (a fake clock for the pace,
no per-process admission throttle).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from redis.exceptions import RedisError

from mercato.db import Database
from mercato.flashsale.common import SaleInfo, get_sale
from mercato.flashsale.gate import Gate, gate_for
from mercato.ratelimit import (
    MemoryTokenBucket,
    Rate,
    TokenBucketLimiter,
    limiter_for,
    throttle,
)
from mercato.runtime import Runtime
from mercato.settings import Settings

log = logging.getLogger("mercato.flashsale")

_KEEPERS: weakref.WeakSet[Keeper] = weakref.WeakSet()
"""Every keeper of this process (one per runtime), told when a sale ends."""

PACE_BURST_SECONDS = 5
"""An admission burst is at most this many seconds' worth of the sale's rate."""
MAX_BATCH = 200
"""The most buyers one admission pass admits."""
ADMIT_EVERY_SECONDS = 0.5
"""A process runs a sale's admission pass on a poll at most this often."""


def pace_rate(admission_rate: int) -> Rate:
    """The token bucket that paces a sale's admissions: ``admission_rate`` buyers per minute,
    in bursts of a few seconds' worth."""
    burst = max(1, math.ceil(admission_rate * PACE_BURST_SECONDS / 60))
    return Rate(burst, admission_rate / 60)


@dataclass(eq=False)
class Keeper:
    gate: Gate
    pace: TokenBucketLimiter
    limiter: TokenBucketLimiter
    secret_key: str
    grace: timedelta
    hold: timedelta
    checkout_grace: timedelta
    customer_rate: Rate
    ip_rate: Rate
    admit_every: float = ADMIT_EVERY_SECONDS
    clock: Callable[[], float] = time.monotonic
    # Used while Redis, which holds the shared limits, cannot be reached.
    fallback_limiter: TokenBucketLimiter = field(default_factory=MemoryTokenBucket)
    _last_pass: dict[str, float] = field(default_factory=dict)
    _sales: dict[str, tuple[float, SaleInfo]] = field(default_factory=dict)
    _refreshing: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _forgotten: dict[str, int] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _KEEPERS.add(self)

    @classmethod
    def from_settings(
        cls, settings: Settings, gate: Gate, limiter: TokenBucketLimiter, **changes: object
    ) -> Keeper:
        keeper = cls(
            gate=gate,
            pace=limiter,
            limiter=limiter,
            secret_key=settings.secret_key,
            grace=timedelta(seconds=settings.flashsale_grace_seconds),
            hold=timedelta(seconds=settings.flashsale_hold_seconds),
            checkout_grace=timedelta(seconds=settings.flashsale_checkout_grace_seconds),
            customer_rate=Rate.per_minute(settings.flashsale_polls_per_customer_per_minute),
            ip_rate=Rate.per_minute(settings.flashsale_requests_per_ip_per_minute),
        )
        for name, value in changes.items():
            setattr(keeper, name, value)
        return keeper

    def pass_due(self, sale_id: str) -> bool:
        """Whether this process should run the sale's admission pass now: every poll would,
        but one pass serves everyone waiting, so a process runs one at most every
        ``admit_every`` seconds."""
        now = self.clock()
        if now - self._last_pass.get(sale_id, -math.inf) < self.admit_every:
            return False
        self._last_pass[sale_id] = now
        return True

    async def sale(self, db: Database, sale_id: str) -> SaleInfo:
        """The sale as the waiting room's answers need it, from this process's memory, so a
        poll costs no transaction. Past ``admit_every`` seconds the copy is read again in the
        background while callers go on with it: in a rush, a read that waits for a pooled
        connection must not hold up every buyer behind it. Only a process that has no copy yet
        (or was told to forget it) waits for the read. 404 for an unknown sale. The counters
        may lag by that much: a waiting buyer may hear ``sold_out`` a moment late; admissions
        and purchases read the sale afresh."""
        found = self._sales.get(sale_id)
        if found is not None:
            if self.clock() - found[0] >= self.admit_every:
                self._refresh(db, sale_id)
            return found[1]
        async with self.lock(f"read:{sale_id}"):
            found = self._sales.get(sale_id)
            if found is not None:
                return found[1]
            return await self._read(db, sale_id)

    async def _read(self, db: Database, sale_id: str) -> SaleInfo:
        generation = self._forgotten.get(sale_id, 0)
        async with db.transaction() as uow:
            sale = await get_sale(uow, sale_id)
        if self._forgotten.get(sale_id, 0) == generation:  # else read before a change: dropped
            self._sales[sale_id] = (self.clock(), sale)
        return sale

    def _refresh(self, db: Database, sale_id: str) -> None:
        running = self._refreshing.get(sale_id)
        if running is not None and not running.done():
            return

        async def refresh() -> None:
            try:
                await self._read(db, sale_id)
            except Exception:  # the database is away: the copy is kept, and read again later
                log.warning("flash sale %s: could not read it again", sale_id, exc_info=True)

        self._refreshing[sale_id] = asyncio.get_running_loop().create_task(refresh())

    def lock(self, name: str) -> asyncio.Lock:
        """A lock of this process by name (one reader of a sale, one opener)."""
        return self._locks.setdefault(name, asyncio.Lock())

    def forget_sale(self, sale_id: str) -> None:
        """Read the sale afresh next time (it changed)."""
        self._sales.pop(sale_id, None)
        self._forgotten[sale_id] = self._forgotten.get(sale_id, 0) + 1

    async def throttle(self, customer_id: str, ip: str) -> None:
        """One request of the customer's and the address's allowance on the sale endpoints, or
        429 ``rate_limited`` with ``Retry-After``. The client IP first: a refused request spends
        nothing of the customer's allowance. Redis unreachable: this process's own buckets."""
        buckets = {
            f"flashsale:ip:{ip}": self.ip_rate,
            f"flashsale:customer:{customer_id}": self.customer_rate,
        }
        detail = "Too many requests to the waiting room; try again shortly"
        try:
            await throttle(self.limiter, buckets, detail=detail)
        except RedisError:
            await throttle(self.fallback_limiter, buckets, detail=detail)


def forget_sale_everywhere(sale_id: str) -> None:
    """Every keeper of this process reads the sale afresh next time (it ended)."""
    for keeper in list(_KEEPERS):
        keeper.forget_sale(sale_id)


def keeper_for(runtime: Runtime) -> Keeper:
    keeper = runtime.extras.get("flashsale.keeper")
    if keeper is None:
        keeper = Keeper.from_settings(runtime.settings, gate_for(runtime), limiter_for(runtime))
        runtime.extras["flashsale.keeper"] = keeper
    assert isinstance(keeper, Keeper)
    return keeper
