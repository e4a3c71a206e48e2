"""The built lists: written under a new version and switched to at once, and held in memory by
each process, which notices a rebuild made elsewhere by the version number.

A process asks for the current version at most every ``recs_reload_seconds`` (one primary-key
read); only when it moved does it load the lists again: from the Redis copy when Redis is
configured and holds that version, else from the database (the system of record), which it then
copies to Redis for the next process.

In memory the lists are a few flat arrays rather than millions of Python objects (a million
products with twenty neighbours each would be tens of millions of them, gigabytes): the sorted
product ids, and per kind a CSR layout over them (``indptr``; int32 neighbour indexes; float32
score and rule measures). :meth:`Lists.of` makes the :class:`Item` objects of the one list asked.
Stored, in the database and in Redis alike, they are those arrays in NumPy's ``.npz`` format,
in parts of :data:`PART_BYTES`: loading is copying bytes, about a second at a million products.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

import numpy as np
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mercato.db import UnitOfWork
from mercato.recommendations.models import RecommendationPart, RecommendationState
from mercato.runtime import Runtime

log = logging.getLogger("mercato.recommendations")

PARTS = cast(Table, RecommendationPart.__table__)
LISTS = PARTS  # where the builds are stored (one version kept)
STATE = cast(Table, RecommendationState.__table__)
SHOP_WIDE = ""  # the product id of the shop-wide popular list
EXTRA = "recommendations"
MEASURES = ("confidence", "support", "lift")
REDIS_PREFIX = "recommendations:lists:"
PART_BYTES = 8 * 1024 * 1024  # a stored or copied build is split in parts this big
REDIS_TTL = 7 * 24 * 3600  # a copy nobody rebuilt or reloaded for a week goes


@dataclass(frozen=True, slots=True)
class Item:
    """One recommended product with why: a rule's measures, or a similarity/popularity score."""

    product_id: str
    score: float
    confidence: float | None = None
    support: float | None = None
    lift: float | None = None

    def row(self) -> list[Any]:
        return [self.product_id, self.score, self.confidence, self.support, self.lift]

    @classmethod
    def of_row(cls, row: list[Any]) -> Item:
        return cls(str(row[0]), float(row[1]), row[2], row[3], row[4])


Key = tuple[str, str]  # (kind, product id)
Array = Any  # numpy.ndarray (numpy's typing of shapes and dtypes adds nothing here)


@dataclass(frozen=True, slots=True)
class KindLists:
    """One kind's lists, CSR over :attr:`Lists.ids`: the product ``ids[i]``'s list is the
    entries ``indptr[i]:indptr[i + 1]``, best first. A measure is None when no item of the kind
    has it (similarity, popularity), else NaN where an item has none."""

    indptr: Array  # int64, len(ids) + 1
    targets: Array  # int32 indexes into ids
    score: Array  # float32 when loaded; float64 fresh from a build (what the database stores)
    confidence: Array | None = None
    support: Array | None = None
    lift: Array | None = None

    def measures(self) -> tuple[Array | None, Array | None, Array | None]:
        return self.confidence, self.support, self.lift

    def listed(self) -> int:
        """How many products have a list of this kind."""
        return int(np.count_nonzero(np.diff(self.indptr)))

    def compact(self) -> KindLists:
        def small(a: Array | None) -> Array | None:
            return None if a is None else np.ascontiguousarray(a, dtype=np.float32)

        return KindLists(
            np.ascontiguousarray(self.indptr, dtype=np.int64),
            np.ascontiguousarray(self.targets, dtype=np.int32),
            np.ascontiguousarray(self.score, dtype=np.float32),
            small(self.confidence),
            small(self.support),
            small(self.lift),
        )

    def nbytes(self) -> int:
        arrays = (self.indptr, self.targets, self.score, *self.measures())
        return sum(a.nbytes for a in arrays if a is not None)


@dataclass(frozen=True, slots=True)
class Lists:
    version: int
    ids: Array  # sorted unique product ids, UTF-8 bytes (numpy "S"); "" (shop-wide) first
    kinds: Mapping[str, KindLists]
    model: str = ""
    # The shop-wide lists are read by every request (the fill-up): their items are made once.
    _shop_wide: dict[str, tuple[Item, ...]] = field(default_factory=dict, compare=False)

    def row(self, product_id: str) -> int | None:
        """The index of ``product_id`` in :attr:`ids` (a binary search), None if absent."""
        key = product_id.encode()
        if len(self.ids) == 0 or len(key) > self.ids.dtype.itemsize:
            return None
        i = int(np.searchsorted(self.ids, key))
        return i if i < len(self.ids) and self.ids[i] == key else None

    def of(self, kind: str, product_id: str = SHOP_WIDE) -> tuple[Item, ...]:
        if product_id == SHOP_WIDE:
            found = self._shop_wide.get(kind)
            if found is None:
                found = self._shop_wide[kind] = self._items(kind, product_id)
            return found
        return self._items(kind, product_id)

    def _items(self, kind: str, product_id: str) -> tuple[Item, ...]:
        table = self.kinds.get(kind)
        i = self.row(product_id) if table is not None else None
        if table is None or i is None:
            return ()
        start, end = int(table.indptr[i]), int(table.indptr[i + 1])
        if start == end:
            return ()
        names = [n.decode() for n in self.ids[table.targets[start:end]].tolist()]
        scores = table.score[start:end].tolist()
        c, s, lift = (_floats(m, start, end) for m in table.measures())
        return tuple(Item(names[k], scores[k], c[k], s[k], lift[k]) for k in range(end - start))

    def listed(self, kind: str) -> int:
        table = self.kinds.get(kind)
        return table.listed() if table is not None else 0

    def with_version(self, version: int, model: str) -> Lists:
        return replace(self, version=version, model=model, _shop_wide={})

    def compact(self) -> Lists:
        """The same lists with float32 scores and int32 indexes: what a process holds."""
        return Lists(
            self.version,
            self.ids,
            {kind: t.compact() for kind, t in self.kinds.items()},
            self.model,
        )

    def nbytes(self) -> int:
        """The arrays' bytes (the whole of a loaded copy but a few small objects)."""
        return int(self.ids.nbytes) + sum(t.nbytes() for t in self.kinds.values())


def _floats(values: Array | None, start: int, end: int) -> list[float | None]:
    if values is None:
        return [None] * (end - start)
    return [None if v != v else v for v in values[start:end].tolist()]  # NaN: no measure


@dataclass(slots=True)
class KindRows:
    """One kind's lists as gathered, before :func:`assemble` orders them: ``owners[r]``'s list
    is ``targets[indptr[r]:indptr[r + 1]]`` (indexes into the names given with them)."""

    owners: Array
    indptr: Array
    targets: Array
    score: Array
    confidence: Array | None = None
    support: Array | None = None
    lift: Array | None = None


def assemble(
    version: int, names: Sequence[str], kinds: Mapping[str, KindRows], model: str
) -> Lists:
    """Lists from gathered rows over ``names`` (unique, any order): the names sorted, each
    kind's rows laid out in that order."""
    order = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[np.asarray(order, dtype=np.int64)] = np.arange(len(names), dtype=np.int64)
    ids = np.array([names[i].encode() for i in order]) if names else np.array([], dtype="S1")
    return Lists(version, ids, {kind: _laid_out(rows, rank) for kind, rows in kinds.items()}, model)


def _laid_out(rows: KindRows, rank: Array) -> KindLists:
    lengths: Array = np.diff(np.asarray(rows.indptr, dtype=np.int64))
    owner_rank = rank[np.asarray(rows.owners, dtype=np.int64)]
    counts = np.zeros(len(rank), dtype=np.int64)
    counts[owner_rank] = lengths
    indptr = np.zeros(len(rank) + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    # Entry j of the laid-out arrays comes from its row's start in the gathered arrays.
    perm = np.argsort(owner_rank, kind="stable")
    shift = np.asarray(rows.indptr[:-1], dtype=np.int64)[perm] - indptr[owner_rank[perm]]
    source = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(shift, lengths[perm])

    def taken(a: Array | None) -> Array | None:
        return None if a is None else np.asarray(a)[source]

    return KindLists(
        indptr,
        rank[np.asarray(rows.targets, dtype=np.int64)][source].astype(np.int32),
        np.asarray(rows.score)[source],
        taken(rows.confidence),
        taken(rows.support),
        taken(rows.lift),
    )


class Gather:
    """Collects lists one product at a time (``[product id, score, ...]`` rows) into
    :func:`assemble`'s input, turning every ``GATHER_FLUSH`` products' values into float32 arrays
    so that no Python object per item outlives its batch."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.kinds: dict[str, _KindGather] = {}

    def _id(self, name: str) -> int:
        found = self.index.get(name)
        if found is None:
            found = self.index[name] = len(self.index)
        return found

    def add(self, kind: str, product_id: str, rows: Sequence[Sequence[Any]]) -> None:
        """``rows``: ``[product id, score, confidence, support, lift]`` each."""
        if not rows:
            return
        g = self.kinds.get(kind)
        if g is None:
            g = self.kinds[kind] = _KindGather()
        g.owners.append(self._id(product_id))
        g.lengths.append(len(rows))
        ident = self._id
        g.targets.extend([ident(r[0]) for r in rows])
        g.values.extend([r[1:5] for r in rows])
        if len(g.lengths) % GATHER_FLUSH == 0:
            g.flush()

    def lists(self, version: int, model: str) -> Lists:
        kinds = {kind: g.rows() for kind, g in self.kinds.items()}
        return assemble(version, list(self.index), kinds, model)


GATHER_FLUSH = 10_000


@dataclass(slots=True)
class _KindGather:
    owners: list[int] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)
    values: list[Sequence[Any]] = field(default_factory=list)
    done: list[tuple[Array, Array, list[Array | None]]] = field(default_factory=list)

    def flush(self) -> None:
        if not self.values:
            return
        values = np.array(self.values, dtype=np.float64).reshape(-1, 4)  # None -> NaN
        measures = [
            None if np.isnan(values[:, k]).all() else values[:, k].astype(np.float32)
            for k in (1, 2, 3)
        ]
        self.done.append(
            (np.array(self.targets, dtype=np.int64), values[:, 0].astype(np.float32), measures)
        )
        self.targets, self.values = [], []

    def rows(self) -> KindRows:
        self.flush()
        indptr = np.zeros(len(self.lengths) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=indptr[1:])
        measures: list[Array | None] = []
        for k in range(3):
            parts = [m[k] for _, _, m in self.done]
            if all(p is None for p in parts):
                measures.append(None)
                continue
            measures.append(
                np.concatenate(
                    [
                        p if p is not None else np.full(len(t), np.nan, dtype=np.float32)
                        for p, (t, _, _) in zip(parts, self.done, strict=True)
                    ]
                )
            )
        return KindRows(
            np.array(self.owners, dtype=np.int64),
            indptr,
            np.concatenate([t for t, _, _ in self.done]),
            np.concatenate([s for _, s, _ in self.done]),
            *measures,
        )


def of_items(version: int, lists: Iterable[tuple[Key, Sequence[Item]]], model: str = "") -> Lists:
    gather = Gather()
    for (kind, product_id), items in lists:
        gather.add(kind, product_id, [i.row() for i in items])
    return gather.lists(version, model)


EMPTY = Lists(0, np.array([], dtype="S1"), {})


# -- the database: the system of record ------------------------------------------------------


async def current_version(uow: UnitOfWork) -> int:
    return int(await uow.scalar(select(STATE.c.version).where(STATE.c.id == 1)) or 0)


async def last_build(uow: UnitOfWork) -> tuple[datetime, int, str] | None:
    row = (
        await uow.execute(
            select(STATE.c.built_at, STATE.c.orders_seen, STATE.c.model).where(STATE.c.id == 1)
        )
    ).first()
    return (row[0], int(row[1]), str(row[2])) if row is not None else None


async def write(
    uow: UnitOfWork,
    lists: Lists | Iterable[tuple[Key, list[Item]]],
    *,
    built_at: datetime,
    orders_seen: int,
    model: str,
) -> int:
    """Store a build under a new version, make it the served one and drop the older parts, in
    the caller's transaction (so a reader sees the old build or the new one, whole)."""
    if not isinstance(lists, Lists):
        lists = of_items(0, lists, model)
    # The state row, locked on PostgreSQL, orders concurrent builds (SQLite's writer lock
    # already does); made first when missing, so even the shop's first two builds queue.
    insert_state = sqlite_insert if uow.is_sqlite else pg_insert
    await uow.execute(
        insert_state(STATE)
        .values(id=1, version=0, built_at=built_at, orders_seen=0, model="")
        .on_conflict_do_nothing()
    )
    served = await uow.scalar(select(STATE.c.version).where(STATE.c.id == 1).with_for_update())
    highest = await uow.scalar(select(func.max(PARTS.c.version)))
    version = max(int(served or 0), int(highest or 0)) + 1
    for n, part in enumerate(parts_of(to_blob(lists.with_version(version, model).compact()))):
        await uow.execute(insert(PARTS).values(version=version, part=n, data=part))
    await uow.execute(
        update(STATE)
        .where(STATE.c.id == 1)
        .values(version=version, built_at=built_at, orders_seen=orders_seen, model=model)
    )
    await uow.execute(delete(PARTS).where(PARTS.c.version != version))
    return version


async def read(uow: UnitOfWork, version: int | None = None) -> Lists:
    """The served lists (or ``version``'s) from the database: its parts, one at a time."""
    if version is None:
        version = await current_version(uow)
    if not version:
        return EMPTY
    rows = await uow.stream(
        select(PARTS.c.data)
        .where(PARTS.c.version == version)
        .order_by(PARTS.c.part)
        .execution_options(yield_per=1)
    )
    parts = [bytes(data) async for data in rows.scalars()]
    if not parts:  # a build committed meanwhile and deleted them: read the new version
        now = await current_version(uow)
        return await read(uow, now) if now != version else EMPTY
    # Unpacking a million products' arrays takes a while: off the event loop.
    return await asyncio.to_thread(from_blob, b"".join(parts))


# -- the stored form: one blob per version, in parts (the database's and Redis's) ----------


def to_blob(lists: Lists) -> bytes:
    """The arrays in NumPy's ``.npz`` format (no pickles), with the version and model."""
    arrays: dict[str, Array] = {"ids": lists.ids}
    for kind, table in lists.kinds.items():
        arrays[f"{kind}.indptr"] = table.indptr
        arrays[f"{kind}.targets"] = table.targets
        arrays[f"{kind}.score"] = table.score
        for name, values in zip(MEASURES, table.measures(), strict=True):
            if values is not None:
                arrays[f"{kind}.{name}"] = values
    meta = {"version": lists.version, "model": lists.model, "kinds": list(lists.kinds)}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def from_blob(blob: bytes) -> Lists:
    with np.load(io.BytesIO(blob), allow_pickle=False) as found:
        meta = json.loads(found["meta"].tobytes())
        names = set(found.files)

        def measure(kind: str, name: str) -> Array | None:
            key = f"{kind}.{name}"
            return found[key] if key in names else None

        kinds = {
            kind: KindLists(
                found[f"{kind}.indptr"],
                found[f"{kind}.targets"],
                found[f"{kind}.score"],
                *(measure(kind, m) for m in MEASURES),
            )
            for kind in meta["kinds"]
        }
        return Lists(int(meta["version"]), found["ids"], kinds, str(meta["model"]))


def parts_of(blob: bytes) -> list[bytes]:
    return [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [b""]


def _redis_key(version: int, part: int | None = None) -> str:
    return f"{REDIS_PREFIX}{version}:" + ("parts" if part is None else str(part))


async def copy_to_redis(redis: Redis, lists: Lists) -> bool:
    """Put ``lists`` (a stored version) in Redis and drop other versions' copies; the parts
    first and their count last, so a reader that finds the count finds every part. False
    (logged) when Redis failed: processes then load from the database."""
    parts = parts_of(to_blob(lists.compact()))
    try:
        for n, part in enumerate(parts):
            await redis.set(_redis_key(lists.version, n), part, ex=REDIS_TTL)
        await redis.set(_redis_key(lists.version), str(len(parts)), ex=REDIS_TTL)
        stale = [
            key
            async for key in redis.scan_iter(match=f"{REDIS_PREFIX}*", count=1000)
            if not _redis_key_of(key, lists.version)
        ]
        if stale:
            await redis.delete(*stale)
    except RedisError:
        log.warning(
            "could not copy recommendations version %s to Redis", lists.version, exc_info=True
        )
        return False
    return True


def _redis_key_of(key: bytes | str, version: int) -> bool:
    text = key.decode() if isinstance(key, bytes) else key
    return text.startswith(f"{REDIS_PREFIX}{version}:")


async def from_redis(redis: Redis, version: int) -> Lists | None:
    """The Redis copy of ``version``; None when it is missing, partial or Redis failed."""
    try:
        count = await redis.get(_redis_key(version))
        if count is None:
            return None
        parts = [await redis.get(_redis_key(version, n)) for n in range(int(count))]
    except (RedisError, ValueError):
        log.warning("could not read recommendations version %s from Redis", version, exc_info=True)
        return None
    if any(p is None for p in parts):
        return None
    try:
        lists = await asyncio.to_thread(from_blob, b"".join(cast(list[bytes], parts)))
    except (ValueError, KeyError, OSError):
        log.warning("ignoring a malformed Redis copy of recommendations version %s", version)
        return None
    return lists if lists.version == version else None


async def load(uow: UnitOfWork, redis: Redis | None, version: int) -> Lists:
    """``version``'s lists: the Redis copy first, else the database (then copied to Redis)."""
    if not version:
        return EMPTY
    if redis is not None:
        found = await from_redis(redis, version)
        if found is not None:
            return found
    lists = await read(uow, version)
    if redis is not None and lists.version:
        await copy_to_redis(redis, lists)
    return lists


# -- each process's copy ---------------------------------------------------------------------


@dataclass(slots=True)
class Loaded:
    """This process's copy of the served lists."""

    lists: Lists = EMPTY
    checked: float = -float("inf")
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _loaded(runtime: Runtime) -> Loaded:
    found = runtime.extras.get(EXTRA)
    if found is None:
        found = runtime.extras[EXTRA] = Loaded()
    return cast(Loaded, found)


async def served(runtime: Runtime, uow: UnitOfWork | None = None) -> Lists:
    """The lists to serve: this process's copy, read again when another process (or this one)
    switched to a newer build since the last look. The version is read in the caller's unit of
    work when given (a request's: on SQLite a second transaction would wait for its lock)."""
    loaded = _loaded(runtime)
    if time.monotonic() - loaded.checked < runtime.settings.recs_reload_seconds:
        return loaded.lists
    if loaded.lock.locked() and loaded.lists.version:
        # Another request is loading a newer build (about a second at a million products):
        # the build this process holds is served meanwhile rather than everyone waiting.
        return loaded.lists
    async with loaded.lock:
        if time.monotonic() - loaded.checked < runtime.settings.recs_reload_seconds:
            return loaded.lists
        if uow is not None:
            await _refresh(loaded, uow, runtime.redis)
        else:
            async with runtime.db.transaction() as own:
                await _refresh(loaded, own, runtime.redis)
        loaded.checked = time.monotonic()
    return loaded.lists


async def _refresh(loaded: Loaded, uow: UnitOfWork, redis: Redis | None) -> None:
    version = await current_version(uow)
    if version != loaded.lists.version:
        loaded.lists = await load(uow, redis, version)
