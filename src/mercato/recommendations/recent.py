"""What this process read lately to filter the lists: product cards, and which variant of a
product can reach a destination. Kept ``recs_reload_seconds`` (recommendations may be a few
seconds stale: a product archived or sold out may still be suggested that long), so a warm
request reads nothing from the database. Bounded: past :data:`MAX_ENTRIES` it starts afresh.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
MAX_ENTRIES = 200_000


@dataclass(slots=True)
class Recent(Generic[K, V]):
    ttl: float
    found: dict[K, tuple[float, V | None]] = field(default_factory=dict)

    async def read(
        self, keys: Collection[K], load: Callable[[list[K]], Awaitable[dict[K, V]]]
    ) -> dict[K, V]:
        """The values of ``keys`` (absent: none exists), loading the stale and unknown ones."""
        if self.ttl <= 0:
            return await load(list(keys))
        now = time.monotonic()
        fresh: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            hit = self.found.get(key)
            if hit is None or hit[0] <= now:
                missing.append(key)
            elif hit[1] is not None:
                fresh[key] = hit[1]
        if missing:
            loaded = await load(missing)
            if len(self.found) + len(missing) > MAX_ENTRIES:
                self.found.clear()
            until = now + self.ttl
            for key in missing:
                self.found[key] = (until, loaded.get(key))
            fresh.update(loaded)
        return fresh
