"""The admission gate: how many units of a sale may still be handed to admitted buyers.

One small protocol, two implementations: :class:`RedisGate` (a Lua script per operation, so
every API process and worker shares one exact count) when Redis is configured, and
:class:`MemoryGate` (a dict; no ``await`` inside an operation, so the event loop makes it
atomic) on the embedded default.

The gate mirrors the database, which is the system of record (``allocation - sold - held`` on
the sale's row). The rules that keep the mirror safe:

* units are **taken before** the database records the admission, and **given back after** the
  database recorded their return: whatever fails in between leaves the gate *lower* than the
  database, which can cost a sale a few minutes of a unit but never oversell it;
* a counter that is missing (Redis restarted or was flushed, a new process) is **unknown**,
  never zero or full: the caller repairs it from the database before admitting anyone;
* an unreachable Redis raises :class:`GateUnavailable`: admissions pause, nothing else fails.
"""

from __future__ import annotations

from typing import Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mercato.runtime import Runtime


class GateUnavailable(Exception):
    """The gate's store cannot be reached: admissions pause until it can."""


class Gate(Protocol):
    async def take(self, sale_id: str, wanted: int) -> int | None:
        """Take up to ``wanted`` units: how many were taken (0: none left), ``None`` when the
        sale's counter is unknown (it must be loaded from the database first)."""
        ...

    async def give_back(self, sale_id: str, units: int) -> None:
        """Return ``units``; nothing happens to an unknown counter (its reload counts them)."""
        ...

    async def load(self, sale_id: str, remaining: int) -> bool:
        """Set an unknown counter to ``remaining``; ``False`` (and no change) if it is known."""
        ...

    async def adjust(self, sale_id: str, delta: int) -> int | None:
        """Add ``delta`` (a repair) to a known counter; its new value, ``None`` if unknown."""
        ...

    async def remaining(self, sale_id: str) -> int | None:
        """The counter, ``None`` when unknown."""
        ...

    async def forget(self, sale_id: str) -> None:
        """Drop the counter (the sale ended)."""
        ...


class MemoryGate:
    """Counters in a dict, for one process (the embedded default)."""

    def __init__(self) -> None:
        self._left: dict[str, int] = {}

    async def take(self, sale_id: str, wanted: int) -> int | None:
        left = self._left.get(sale_id)
        if left is None:
            return None
        taken = max(0, min(wanted, left))
        self._left[sale_id] = left - taken
        return taken

    async def give_back(self, sale_id: str, units: int) -> None:
        if sale_id in self._left:
            self._left[sale_id] += units

    async def load(self, sale_id: str, remaining: int) -> bool:
        if sale_id in self._left:
            return False
        self._left[sale_id] = max(0, remaining)
        return True

    async def adjust(self, sale_id: str, delta: int) -> int | None:
        if sale_id not in self._left:
            return None
        self._left[sale_id] = max(0, self._left[sale_id] + delta)
        return self._left[sale_id]

    async def remaining(self, sale_id: str) -> int | None:
        return self._left.get(sale_id)

    async def forget(self, sale_id: str) -> None:
        self._left.pop(sale_id, None)


# Take up to ARGV[1] units in one step: -1 when the counter is missing, else how many.
_TAKE = """
local left = redis.call('GET', KEYS[1])
if not left then return -1 end
left = tonumber(left)
local wanted = tonumber(ARGV[1])
if left <= 0 then return 0 end
local taken = math.min(left, wanted)
redis.call('DECRBY', KEYS[1], taken)
return taken
"""
# Add ARGV[1] (a return or a repair) to a counter that exists, never below zero: -1 if missing.
_ADD = """
local left = redis.call('GET', KEYS[1])
if not left then return -1 end
local value = math.max(0, tonumber(left) + tonumber(ARGV[1]))
redis.call('SET', KEYS[1], value)
return value
"""


class RedisGate:
    """Counters as Redis integers, shared by every process; each operation one Lua script."""

    def __init__(self, redis: Redis, *, prefix: str = "mercato:flashsale:gate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._take = redis.register_script(_TAKE)
        self._add = redis.register_script(_ADD)

    def _key(self, sale_id: str) -> str:
        return self._prefix + sale_id

    async def take(self, sale_id: str, wanted: int) -> int | None:
        try:
            taken = int(await self._take(keys=[self._key(sale_id)], args=[wanted]))
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc
        return None if taken < 0 else taken

    async def give_back(self, sale_id: str, units: int) -> None:
        await self.adjust(sale_id, units)

    async def load(self, sale_id: str, remaining: int) -> bool:
        try:
            return bool(await self._redis.set(self._key(sale_id), max(0, remaining), nx=True))
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc

    async def adjust(self, sale_id: str, delta: int) -> int | None:
        try:
            value = int(await self._add(keys=[self._key(sale_id)], args=[delta]))
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc
        return None if value < 0 else value

    async def remaining(self, sale_id: str) -> int | None:
        try:
            value = await self._redis.get(self._key(sale_id))
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc
        return None if value is None else int(value)

    async def forget(self, sale_id: str) -> None:
        try:
            await self._redis.delete(self._key(sale_id))
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc


def gate_for(runtime: Runtime) -> Gate:
    """The process-wide gate: Redis when configured, memory otherwise (created once)."""
    gate = runtime.extras.get("flashsale.gate")
    if gate is None:
        gate = RedisGate(runtime.redis) if runtime.redis is not None else MemoryGate()
        runtime.extras["flashsale.gate"] = gate
    return cast(Gate, gate)
