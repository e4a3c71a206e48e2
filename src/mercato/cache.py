"""Read-through caches of what shoppers read most (product pages, listings, the home page's
rows): in Redis when it is configured, so that every process shares one copy, else in this
process's memory, bounded and least recently used dropped first.

Invalidation is by **generation**. Each entry is stored with the generations its tags had when
they were read *before* the data was loaded; a change bumps its tags' generations (after its
transaction committed: the outbox consumer does it), and an entry whose stored generations are
not the current ones is a miss. So a reader that loaded the old rows just before a change can
never store them as current, nothing needs deleting, and another process's bump is seen at
once. A generation is a fresh random token, never a counter: a generation key Redis loses
(eviction, a restart) comes back as a new token no stored entry carries. Entries also expire
(``page_cache_ttl_seconds``), the safety net for a change whose event is lost or for a
process whose memory cache no worker of its own invalidates.

Redis failures fall back to loading from the database (a miss), never to an error page.

Hits and misses are counted per area in this process (:func:`cache_stats`); with Redis, each
process also leaves a snapshot of its counts in :data:`STATS_KEY` every few seconds, which is
how a benchmark driving many processes reads the hit ratio.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import secrets
import socket
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from mercato.runtime import Runtime

log = logging.getLogger("mercato.cache")

T = TypeVar("T")

FORMAT = 1
"""Part of every Redis key: a release that changes what is stored bumps it, so processes of two
releases side by side never read each other's entries."""
PREFIX = f"mercato:cache:{FORMAT}:"
STATS_KEY = "mercato:cache:stats"
STATS_EVERY = 2.0
"""Seconds between two snapshots of a process's counts in Redis."""
EXTRAS_KEY = "cache"
_MISSING = object()


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0

    @property
    def ratio(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


@dataclass(frozen=True, slots=True)
class Lookup:
    """A read: the value when found current, else the generations to store a fresh one with."""

    value: Any
    generations: tuple[str, ...] | None
    """None when the store could not be read: a value loaded now is not stored."""

    @property
    def hit(self) -> bool:
        return self.value is not _MISSING


@dataclass
class ReadCache:
    """The shared part: counting and read-through. Values are never mutated by readers (the
    memory store hands out the stored object itself)."""

    ttl_seconds: float
    counts: dict[str, CacheCounts] = field(default_factory=dict)

    async def lookup(self, key: str, tags: Sequence[str]) -> Lookup:
        raise NotImplementedError

    async def store(self, key: str, value: Any, generations: tuple[str, ...]) -> None:
        raise NotImplementedError

    async def bump(self, *tags: str) -> None:
        """Every entry carrying one of these tags is stale from now on."""
        raise NotImplementedError

    async def read_through(
        self, area: str, key: str, tags: Sequence[str], load: Callable[[], Awaitable[T]]
    ) -> T:
        """The cached value of ``key`` in ``area`` when current, else ``load()``'s (stored for
        the next reader). ``tags`` name what a change to would make the value stale."""
        found = await self.lookup(f"{area}:{key}", tags)
        counts = self.counts.setdefault(area, CacheCounts())
        if found.hit:
            counts.hits += 1
            self._counted()
            value: T = found.value
            return value
        counts.misses += 1
        self._counted()
        value = await load()
        if found.generations is not None:
            await self.store(f"{area}:{key}", value, found.generations)
        return value

    def _counted(self) -> None:
        """Hook for stores that publish their counts."""


class MemoryCache(ReadCache):
    """This process's entries, at most ``max_entries``, least recently used dropped first."""

    def __init__(self, ttl_seconds: float, max_entries: int) -> None:
        super().__init__(ttl_seconds)
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Any, tuple[str, ...], float]] = OrderedDict()
        self._generations: dict[str, str] = {}

    def _generation(self, tag: str) -> str:
        found = self._generations.get(tag)
        if found is None:
            found = self._generations[tag] = secrets.token_hex(8)
        return found

    async def lookup(self, key: str, tags: Sequence[str]) -> Lookup:
        current = tuple(self._generation(t) for t in tags)
        entry = self._entries.get(key)
        if entry is not None:
            value, generations, expires = entry
            if generations == current and time.monotonic() < expires:
                self._entries.move_to_end(key)
                return Lookup(value, current)
            del self._entries[key]
        return Lookup(_MISSING, current)

    async def store(self, key: str, value: Any, generations: tuple[str, ...]) -> None:
        self._entries[key] = (value, generations, time.monotonic() + self.ttl_seconds)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    async def bump(self, *tags: str) -> None:
        for tag in tags:
            self._generations[tag] = secrets.token_hex(8)

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache(ReadCache):
    """Entries shared by every process: one ``MGET`` (the entry and its tags' generations) per
    read, pickled values (Redis is the shop's own, trusted like its database)."""

    def __init__(self, redis: Redis, ttl_seconds: float) -> None:
        super().__init__(ttl_seconds)
        self.redis = redis
        self._published = 0.0
        self._publishing: asyncio.Task[None] | None = None
        self.process = f"{socket.gethostname()}:{os.getpid()}"

    @staticmethod
    def entry_key(key: str) -> str:
        return PREFIX + "e:" + key

    @staticmethod
    def tag_key(tag: str) -> str:
        return PREFIX + "g:" + tag

    async def lookup(self, key: str, tags: Sequence[str]) -> Lookup:
        try:
            raw, *generations = await self.redis.mget(
                [self.entry_key(key), *(self.tag_key(t) for t in tags)]
            )
            if any(g is None for g in generations):
                generations = await self._start_generations(tags, generations)
        except RedisError:
            log.warning("page cache read failed for %s", key, exc_info=True)
            return Lookup(_MISSING, None)
        current = tuple(g.decode() if isinstance(g, bytes) else str(g) for g in generations)
        if isinstance(raw, bytes):
            try:
                stored, value = pickle.loads(raw)  # noqa: S301 (our own Redis, our own entries)
            except Exception:  # a torn or foreign entry is a miss, never an error page
                log.warning("ignoring an unreadable page cache entry %s", key)
            else:
                if tuple(stored) == current:
                    return Lookup(value, current)
        return Lookup(_MISSING, current)

    async def _start_generations(self, tags: Sequence[str], found: list[Any]) -> list[Any]:
        """A tag without a generation yet (or one Redis lost) gets a fresh one; ``SET NX`` so
        that two processes starting it at once agree on the winner's."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for tag, generation in zip(tags, found, strict=True):
                if generation is None:
                    pipe.set(self.tag_key(tag), secrets.token_hex(8), nx=True)
            pipe.mget([self.tag_key(t) for t in tags])
            replies = await pipe.execute()
        generations: list[Any] = replies[-1]
        if any(g is None for g in generations):
            raise RedisError("a generation key vanished while it was being set")
        return generations

    async def store(self, key: str, value: Any, generations: tuple[str, ...]) -> None:
        try:
            data = pickle.dumps((generations, value), protocol=pickle.HIGHEST_PROTOCOL)
            await self.redis.set(self.entry_key(key), data, ex=max(1, int(self.ttl_seconds)))
        except (RedisError, pickle.PicklingError, TypeError):
            log.warning("page cache write failed for %s", key, exc_info=True)

    async def bump(self, *tags: str) -> None:
        # Errors reach the caller: an outbox consumer that failed to bump is retried.
        if tags:
            async with self.redis.pipeline(transaction=False) as pipe:
                for tag in tags:
                    pipe.set(self.tag_key(tag), secrets.token_hex(8))
                await pipe.execute()

    def _counted(self) -> None:
        now = time.monotonic()
        if now - self._published < STATS_EVERY:
            return
        if self._publishing is not None and not self._publishing.done():
            return
        self._published = now
        self._publishing = asyncio.get_running_loop().create_task(self.publish_stats())

    async def publish_stats(self) -> None:
        """Leave this process's counts in :data:`STATS_KEY` (for the benchmark's sum)."""
        snapshot = {a: [c.hits, c.misses] for a, c in self.counts.items()}
        try:
            await self.redis.hset(STATS_KEY, self.process, json.dumps(snapshot))
            await self.redis.expire(STATS_KEY, 24 * 3600)
        except RedisError:
            log.debug("page cache counts not published", exc_info=True)


def cache_for(runtime: Runtime) -> ReadCache:
    """The process's page cache (one per runtime): Redis when configured, else memory."""
    cache = runtime.extras.get(EXTRAS_KEY)
    if isinstance(cache, ReadCache):
        return cache
    settings = runtime.settings
    ttl = float(settings.page_cache_ttl_seconds)
    if runtime.redis is not None:
        cache = RedisCache(runtime.redis, ttl)
    else:
        cache = MemoryCache(ttl, settings.page_cache_max_entries)
    runtime.extras[EXTRAS_KEY] = cache
    return cache


def enabled(runtime: Runtime) -> bool:
    return runtime.settings.page_cache_ttl_seconds > 0


async def read_through(
    runtime: Runtime,
    area: str,
    key: str,
    tags: Sequence[str],
    load: Callable[[], Awaitable[T]],
) -> T:
    """``load()``'s answer, from the page cache when current (straight from ``load`` when the
    cache is turned off)."""
    if not enabled(runtime):
        return await load()
    return await cache_for(runtime).read_through(area, key, tags, load)


async def bump(runtime: Runtime, *tags: str) -> None:
    if enabled(runtime) and tags:
        await cache_for(runtime).bump(*tags)


def cache_stats(runtime: Runtime) -> dict[str, dict[str, int]]:
    """This process's page cache hits and misses per area (``product``, ``listing``...), as
    plain numbers for a metrics endpoint to export."""
    cache = runtime.extras.get(EXTRAS_KEY)
    if not isinstance(cache, ReadCache):
        return {}
    return {a: {"hits": c.hits, "misses": c.misses} for a, c in sorted(cache.counts.items())}


def _sum_snapshots(raw: dict[Any, Any]) -> dict[str, CacheCounts]:
    total: dict[str, CacheCounts] = {}
    for value in raw.values():
        try:
            snapshot = json.loads(value)
        except ValueError:
            continue
        for area, (hits, misses) in snapshot.items():
            counts = total.setdefault(area, CacheCounts())
            counts.hits += int(hits)
            counts.misses += int(misses)
    return total


async def shared_cache_stats(redis: Redis) -> dict[str, CacheCounts]:
    """The counts every process sharing this Redis last published, summed per area."""
    return _sum_snapshots(await redis.hgetall(STATS_KEY))
