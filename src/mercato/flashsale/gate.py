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

The gate also keeps the sale's **waiting room** (:class:`Place`), so that joining and polling
never touch the database: per sale, the line (customer → position, in order), the pre-queue
(numbered at random at the start), when each buyer was last seen (places lapse after the grace
period), and the state of every buyer who left the line (``admitting`` while an admission
pass records them, then ``admitted``, ``checking_out``, ``purchased`` or ``expired``). The
database records every admission and what follows it; the gate's copy of those states is
written after each commit and repaired from the database by the reconciliation
(:func:`~mercato.flashsale.sales.reconcile`). Waiting places live only in the gate: if Redis
loses them, their buyers are told they have no place and join again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, cast

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mercato.runtime import Runtime


class GateUnavailable(Exception):
    """The gate's store cannot be reached: admissions pause until it can."""


WAITING = "waiting"
LEFT_KEEP_SECONDS = 24 * 3600
"""How long an ended sale's waiting room stays readable in Redis (buyers still polling it)."""


@dataclass(frozen=True, slots=True)
class Place:
    """A buyer's place in a sale's waiting room, as the gate knows it. ``position`` is ``None``
    in the pre-queue; times are Unix seconds; ``until`` is the hold's expiry of an admission."""

    customer_id: str
    state: str  # waiting, admitting, admitted, checking_out, purchased, expired
    position: int | None
    joined_at: float
    last_seen: float
    served_through: int
    units: int = 0
    until: int | None = None
    purchased: int = 0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Called:
    """A buyer the admission pass took from the head of the line."""

    customer_id: str
    position: int
    joined_at: float


def left_state(
    state: str,
    position: int | None = None,
    *,
    units: int = 0,
    until: int | None = None,
    purchased: int = 0,
    reason: str | None = None,
) -> str:
    """How the gate stores the state of a buyer who left the line."""
    pos = "" if position is None else str(position)
    return f"{state}|{pos}|{units}|{'' if until is None else until}|{purchased}|{reason or ''}"


def _place(customer_id: str, raw: str, served: int, seen: float, joined: float) -> Place:
    kind, pos, units, until, purchased, reason = raw.split("|")
    return Place(
        customer_id=customer_id,
        state=kind,
        position=int(pos) if pos else None,
        joined_at=joined,
        last_seen=seen,
        served_through=served,
        units=int(units or 0),
        until=int(until) if until else None,
        purchased=int(purchased or 0),
        reason=reason or None,
    )


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

    # The waiting room. ``now`` and ``grace`` in seconds; a waiting place whose buyer was last
    # seen before ``now - grace`` has lapsed.

    async def enter(self, sale_id: str, customer_id: str, now: float, grace: float) -> Place:
        """Take the customer's one place (idempotent): a place held (waiting and not lapsed,
        admitted, checking out, purchased) is answered as it is, a waiting one counts as seen;
        else a new place at the back of the line (in the pre-queue before the start)."""
        ...

    async def place(
        self, sale_id: str, customer_id: str, now: float, grace: float, touch_after: float
    ) -> Place | None:
        """The customer's place (``None``: none), marked seen if it waits and was last seen
        ``touch_after`` seconds ago or more. A lapsed place is answered as it is (the next
        admission pass lets it go)."""
        ...

    async def started(self, sale_id: str) -> bool:
        """Whether the line is open (the pre-queue numbered)."""
        ...

    async def open_line(self, sale_id: str, order: list[str], after: int) -> int:
        """Open the line: the pre-queue's buyers numbered from ``after + 1`` in ``order`` (a
        random draw), those who joined it meanwhile after them. Idempotent. How many."""
        ...

    async def pre_queue(self, sale_id: str) -> list[str]:
        """The buyers in the pre-queue."""
        ...

    async def lapse(self, sale_id: str, now: float, grace: float) -> int:
        """Let waiting places whose buyer was last seen before ``now - grace`` go
        (``expired``, ``lapsed``). How many."""
        ...

    async def waiting(self, sale_id: str) -> int:
        """Buyers in the line and the pre-queue."""
        ...

    async def call(self, sale_id: str, count: int) -> list[Called]:
        """Take up to ``count`` buyers from the head of the line, in order: each is
        ``admitting`` until :meth:`settle` records what became of them."""
        ...

    async def requeue(self, sale_id: str, called: list[Called]) -> None:
        """Put buyers taken by :meth:`call` back in their places (their admission failed)."""
        ...

    async def settle(self, sale_id: str, states: dict[str, str]) -> None:
        """Record what became of buyers who left the line (:func:`left_state`), after the
        database did."""
        ...

    async def left(self, sale_id: str) -> dict[str, str]:
        """Every buyer who left the line, with their stored state (for the reconciliation)."""
        ...


class MemoryGate:
    """Counters in a dict, for one process (the embedded default)."""

    def __init__(self) -> None:
        self._left: dict[str, int] = {}
        self._rooms: dict[str, _Room] = {}

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

    # The waiting room: the same rules as the Lua scripts of :class:`RedisGate`.

    def _room(self, sale_id: str) -> _Room:
        room = self._rooms.get(sale_id)
        if room is None:
            room = self._rooms[sale_id] = _Room()
        return room

    async def enter(self, sale_id: str, customer_id: str, now: float, grace: float) -> Place:
        room = self._room(sale_id)
        c = customer_id
        gone = room.gone.get(c)
        if gone is not None and not gone.startswith("expired|"):
            return room.describe(c)
        if c in room.line or c in room.pre:
            if room.seen[c] >= now - grace:
                room.seen[c] = now
                return room.describe(c)
            room.line.pop(c, None)
            room.pre.pop(c, None)
        room.gone.pop(c, None)
        if room.started:
            room.next += 1
            room.line[c] = room.next
        else:
            room.pre[c] = now
        room.seen[c] = now
        room.joined[c] = now
        return room.describe(c)

    async def place(
        self, sale_id: str, customer_id: str, now: float, grace: float, touch_after: float
    ) -> Place | None:
        room = self._room(sale_id)
        c = customer_id
        if c not in room.gone and c not in room.line and c not in room.pre:
            return None
        seen = room.seen.get(c)
        if c not in room.gone and seen is not None and now - grace <= seen <= now - touch_after:
            room.seen[c] = now
        return room.describe(c)

    async def started(self, sale_id: str) -> bool:
        return self._room(sale_id).started

    async def open_line(self, sale_id: str, order: list[str], after: int) -> int:
        room = self._room(sale_id)
        n = max(after, room.next)
        first = n
        for c in [*order, *sorted(room.pre, key=lambda k: room.pre[k])]:
            if c in room.pre:
                del room.pre[c]
                n += 1
                room.line[c] = n
        room.next = n
        room.started = True
        return n - first

    async def pre_queue(self, sale_id: str) -> list[str]:
        return list(self._room(sale_id).pre)

    async def lapse(self, sale_id: str, now: float, grace: float) -> int:
        room = self._room(sale_id)
        gone = [
            c
            for c, seen in room.seen.items()
            if seen < now - grace and (c in room.line or c in room.pre)
        ]
        for c in gone:
            position = room.line.pop(c, None)
            room.pre.pop(c, None)
            del room.seen[c]
            room.gone[c] = left_state("expired", position, reason="lapsed")
        return len(gone)

    async def waiting(self, sale_id: str) -> int:
        room = self._room(sale_id)
        return len(room.line) + len(room.pre)

    async def call(self, sale_id: str, count: int) -> list[Called]:
        room = self._room(sale_id)
        if count <= 0 or not room.line:
            return []
        head = sorted(room.line, key=lambda k: room.line[k])[:count]
        called = []
        for c in head:
            position = room.line.pop(c)
            room.gone[c] = left_state("admitting", position)
            room.served = max(room.served, position)
            called.append(Called(c, position, room.joined.get(c, 0.0)))
        return called

    async def requeue(self, sale_id: str, called: list[Called]) -> None:
        room = self._room(sale_id)
        for entry in called:
            if room.gone.get(entry.customer_id, "").startswith("admitting|"):
                del room.gone[entry.customer_id]
                room.line[entry.customer_id] = entry.position

    async def settle(self, sale_id: str, states: dict[str, str]) -> None:
        room = self._room(sale_id)
        for c, raw in states.items():
            room.line.pop(c, None)
            room.pre.pop(c, None)
            room.seen.pop(c, None)
            room.gone[c] = raw

    async def left(self, sale_id: str) -> dict[str, str]:
        return dict(self._room(sale_id).gone)


class _Room:
    """One sale's waiting room in memory."""

    def __init__(self) -> None:
        self.line: dict[str, int] = {}  # customer -> position
        self.pre: dict[str, float] = {}  # customer -> joined
        self.seen: dict[str, float] = {}
        self.joined: dict[str, float] = {}
        self.gone: dict[str, str] = {}  # customer -> left_state(...)
        self.next = 0
        self.served = 0
        self.started = False

    def describe(self, c: str) -> Place:
        raw = self.gone.get(c)
        if raw is None:
            raw = left_state(WAITING, self.line.get(c))
        return _place(c, raw, self.served, self.seen.get(c, 0.0), self.joined.get(c, 0.0))


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

# The waiting room's scripts. KEYS: 1 the line (customer -> position), 2 the pre-queue
# (customer -> joined), 3 last seen (customer -> time), 4 joined (customer -> time), 5 who left
# the line (customer -> state), 6 the sale's figures (next, served, started).
_DESCRIBE = """
local function describe(c)
  local raw = redis.call('HGET', KEYS[5], c)
  if not raw then
    local pos = redis.call('ZSCORE', KEYS[1], c)
    if not pos and not redis.call('ZSCORE', KEYS[2], c) then return false end
    raw = 'waiting|' .. (pos or '') .. '|0||0|'
  end
  return {raw, redis.call('HGET', KEYS[6], 'served') or '0',
          redis.call('ZSCORE', KEYS[3], c) or '0', redis.call('HGET', KEYS[4], c) or '0'}
end
"""
_ENTER = (
    _DESCRIBE
    + """
local c, now, grace = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local raw = redis.call('HGET', KEYS[5], c)
if raw and string.sub(raw, 1, 8) ~= 'expired|' then return describe(c) end
if redis.call('ZSCORE', KEYS[1], c) or redis.call('ZSCORE', KEYS[2], c) then
  local seen = tonumber(redis.call('ZSCORE', KEYS[3], c) or '0')
  if seen >= now - grace then
    redis.call('ZADD', KEYS[3], ARGV[2], c)
    return describe(c)
  end
  redis.call('ZREM', KEYS[1], c)
  redis.call('ZREM', KEYS[2], c)
end
redis.call('HDEL', KEYS[5], c)
if redis.call('HGET', KEYS[6], 'started') then
  redis.call('ZADD', KEYS[1], redis.call('HINCRBY', KEYS[6], 'next', 1), c)
else
  redis.call('ZADD', KEYS[2], ARGV[2], c)
end
redis.call('ZADD', KEYS[3], ARGV[2], c)
redis.call('HSET', KEYS[4], c, ARGV[2])
return describe(c)
"""
)
_PLACE = (
    _DESCRIBE
    + """
local c, now = ARGV[1], tonumber(ARGV[2])
local grace, touch = tonumber(ARGV[3]), tonumber(ARGV[4])
if redis.call('HEXISTS', KEYS[5], c) == 0 then
  local seen = redis.call('ZSCORE', KEYS[3], c)
  if seen then
    seen = tonumber(seen)
    if seen >= now - grace and seen <= now - touch then
      redis.call('ZADD', KEYS[3], ARGV[2], c)
    end
  end
end
return describe(c)
"""
)
_OPEN = """
local n = math.max(tonumber(ARGV[1]), tonumber(redis.call('HGET', KEYS[6], 'next') or '0'))
local first = n
local function number(c)
  if redis.call('ZSCORE', KEYS[2], c) then
    n = n + 1
    redis.call('ZADD', KEYS[1], n, c)
    redis.call('ZREM', KEYS[2], c)
  end
end
for i = 2, #ARGV do number(ARGV[i]) end
for _, c in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do number(c) end
redis.call('HSET', KEYS[6], 'next', n)
redis.call('HSET', KEYS[6], 'started', 1)
return n - first
"""
_LAPSE = """
local n = 0
for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[1])) do
  local pos = redis.call('ZSCORE', KEYS[1], c)
  if pos or redis.call('ZSCORE', KEYS[2], c) then
    redis.call('ZREM', KEYS[1], c)
    redis.call('ZREM', KEYS[2], c)
    redis.call('ZREM', KEYS[3], c)
    redis.call('HSET', KEYS[5], c, 'expired|' .. (pos or '') .. '|0||0|lapsed')
    n = n + 1
  end
end
return n
"""
_CALL = """
local got = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1, 'WITHSCORES')
local out = {}
local served = tonumber(redis.call('HGET', KEYS[6], 'served') or '0')
for i = 1, #got, 2 do
  local c, pos = got[i], got[i + 1]
  redis.call('ZREM', KEYS[1], c)
  redis.call('HSET', KEYS[5], c, 'admitting|' .. pos .. '|0||0|')
  served = math.max(served, tonumber(pos))
  table.insert(out, c)
  table.insert(out, pos)
  table.insert(out, redis.call('HGET', KEYS[4], c) or '0')
end
if #got > 0 then redis.call('HSET', KEYS[6], 'served', served) end
return out
"""
_REQUEUE = """
for i = 1, #ARGV, 2 do
  local raw = redis.call('HGET', KEYS[5], ARGV[i])
  if raw and string.sub(raw, 1, 10) == 'admitting|' then
    redis.call('HDEL', KEYS[5], ARGV[i])
    redis.call('ZADD', KEYS[1], ARGV[i + 1], ARGV[i])
  end
end
return 0
"""
_SETTLE = """
for i = 1, #ARGV, 2 do
  local c = ARGV[i]
  redis.call('ZREM', KEYS[1], c)
  redis.call('ZREM', KEYS[2], c)
  redis.call('ZREM', KEYS[3], c)
  redis.call('HSET', KEYS[5], c, ARGV[i + 1])
end
return 0
"""
_ROOM_PARTS = ("line", "pre", "seen", "joined", "left", "meta")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisGate:
    """Counters as Redis integers, shared by every process; each operation one Lua script."""

    def __init__(self, redis: Redis, *, prefix: str = "mercato:flashsale:gate:") -> None:
        self._redis = redis
        self._prefix = prefix
        self._take = redis.register_script(_TAKE)
        self._add = redis.register_script(_ADD)
        self._enter = redis.register_script(_ENTER)
        self._place = redis.register_script(_PLACE)
        self._open = redis.register_script(_OPEN)
        self._lapse = redis.register_script(_LAPSE)
        self._call = redis.register_script(_CALL)
        self._requeue = redis.register_script(_REQUEUE)
        self._settle = redis.register_script(_SETTLE)

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
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(self._key(sale_id))
                for key in self._room(sale_id):
                    pipe.expire(key, LEFT_KEEP_SECONDS)
                await pipe.execute()
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc

    def _room(self, sale_id: str) -> list[str]:
        # One hash tag per sale: a cluster keeps a sale's keys on one node, as scripts need.
        return [f"{self._prefix}room:{{{sale_id}}}:{part}" for part in _ROOM_PARTS]

    async def _run(self, script: Any, sale_id: str, *args: Any) -> Any:
        try:
            return await script(keys=self._room(sale_id), args=list(args))
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc

    @staticmethod
    def _described(customer_id: str, found: Any) -> Place | None:
        if not found:
            return None
        raw, served, seen, joined = (_text(v) for v in found)
        return _place(customer_id, raw, int(float(served)), float(seen), float(joined))

    async def enter(self, sale_id: str, customer_id: str, now: float, grace: float) -> Place:
        found = await self._run(self._enter, sale_id, customer_id, repr(now), repr(grace))
        place = self._described(customer_id, found)
        assert place is not None
        return place

    async def place(
        self, sale_id: str, customer_id: str, now: float, grace: float, touch_after: float
    ) -> Place | None:
        found = await self._run(
            self._place, sale_id, customer_id, repr(now), repr(grace), repr(touch_after)
        )
        return self._described(customer_id, found)

    async def started(self, sale_id: str) -> bool:
        try:
            return bool(await self._redis.hget(self._room(sale_id)[5], "started"))
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc

    async def open_line(self, sale_id: str, order: list[str], after: int) -> int:
        return int(await self._run(self._open, sale_id, after, *order))

    async def pre_queue(self, sale_id: str) -> list[str]:
        try:
            found = await self._redis.zrange(self._room(sale_id)[1], 0, -1)
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc
        return [_text(c) for c in found]

    async def lapse(self, sale_id: str, now: float, grace: float) -> int:
        return int(await self._run(self._lapse, sale_id, repr(now - grace)))

    async def waiting(self, sale_id: str) -> int:
        keys = self._room(sale_id)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys[0])
                pipe.zcard(keys[1])
                line, pre = await pipe.execute()
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc
        return int(line) + int(pre)

    async def call(self, sale_id: str, count: int) -> list[Called]:
        if count <= 0:
            return []
        found = [_text(v) for v in await self._run(self._call, sale_id, count)]
        return [
            Called(found[i], int(float(found[i + 1])), float(found[i + 2]))
            for i in range(0, len(found), 3)
        ]

    async def requeue(self, sale_id: str, called: list[Called]) -> None:
        if called:
            args = [v for c in called for v in (c.customer_id, c.position)]
            await self._run(self._requeue, sale_id, *args)

    async def settle(self, sale_id: str, states: dict[str, str]) -> None:
        if states:
            await self._run(self._settle, sale_id, *(v for kv in states.items() for v in kv))

    async def left(self, sale_id: str) -> dict[str, str]:
        try:
            found = await self._redis.hgetall(self._room(sale_id)[4])
        except RedisError as exc:
            raise GateUnavailable(str(exc)) from exc
        return {_text(k): _text(v) for k, v in found.items()}


def gate_for(runtime: Runtime) -> Gate:
    """The process-wide gate: Redis when configured, memory otherwise (created once)."""
    gate = runtime.extras.get("flashsale.gate")
    if gate is None:
        gate = RedisGate(runtime.redis) if runtime.redis is not None else MemoryGate()
        runtime.extras["flashsale.gate"] = gate
    return cast(Gate, gate)
