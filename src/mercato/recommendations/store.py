"""The built lists: written under a new version and switched to at once, and held in memory by
each process, which notices a rebuild made elsewhere by the version number.

A process asks for the current version at most every ``recs_reload_seconds`` (one primary-key
read); only when it moved does it read the lists again, so a product's lists are served from a
dict of tuples.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mercato.db import UnitOfWork
from mercato.recommendations.models import RecommendationList, RecommendationState
from mercato.runtime import Runtime

LISTS = cast(Table, RecommendationList.__table__)
STATE = cast(Table, RecommendationState.__table__)
SHOP_WIDE = ""  # the product id of the shop-wide popular list
INSERT_BATCH = 1000
EXTRA = "recommendations"


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


@dataclass(frozen=True, slots=True)
class Lists:
    version: int
    by_key: Mapping[Key, tuple[Item, ...]]
    model: str = ""

    def of(self, kind: str, product_id: str = SHOP_WIDE) -> tuple[Item, ...]:
        return self.by_key.get((kind, product_id), ())


EMPTY = Lists(0, {})


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
    lists: Iterable[tuple[Key, list[Item]]],
    *,
    built_at: datetime,
    orders_seen: int,
    model: str,
) -> int:
    """Store a build under a new version, make it the served one and drop the older rows, in
    the caller's transaction (so a reader sees the old build or the new one, whole)."""
    # The state row, locked on PostgreSQL, orders concurrent builds (SQLite's writer lock
    # already does); made first when missing, so even the shop's first two builds queue.
    insert_state = sqlite_insert if uow.is_sqlite else pg_insert
    await uow.execute(
        insert_state(STATE)
        .values(id=1, version=0, built_at=built_at, orders_seen=0, model="")
        .on_conflict_do_nothing()
    )
    served = await uow.scalar(select(STATE.c.version).where(STATE.c.id == 1).with_for_update())
    highest = await uow.scalar(select(func.max(LISTS.c.version)))
    version = max(int(served or 0), int(highest or 0)) + 1
    batch: list[dict[str, Any]] = []
    for (kind, product_id), items in lists:
        batch.append(
            {
                "version": version,
                "kind": kind,
                "product_id": product_id,
                "items": [i.row() for i in items],
            }
        )
        if len(batch) >= INSERT_BATCH:
            await uow.execute(insert(LISTS), batch)
            batch = []
    if batch:
        await uow.execute(insert(LISTS), batch)
    await uow.execute(
        update(STATE)
        .where(STATE.c.id == 1)
        .values(version=version, built_at=built_at, orders_seen=orders_seen, model=model)
    )
    await uow.execute(delete(LISTS).where(LISTS.c.version != version))
    return version


async def read(uow: UnitOfWork) -> Lists:
    version = await current_version(uow)
    if not version:
        return EMPTY
    model = await uow.scalar(select(STATE.c.model).where(STATE.c.id == 1))
    rows = await uow.execute(
        select(LISTS.c.kind, LISTS.c.product_id, LISTS.c["items"]).where(LISTS.c.version == version)
    )
    by_key = {
        (kind, product_id): tuple(Item.of_row(r) for r in items) for kind, product_id, items in rows
    }
    return Lists(version, by_key, str(model or ""))


async def read_some(uow: UnitOfWork, keys: Iterable[Key]) -> Lists:
    """Only the lists of ``keys`` (and the shop-wide popular list) of the served version: for
    a process that keeps no copy of them all."""
    version = await current_version(uow)
    wanted = {*keys, ("popular", SHOP_WIDE)}
    if not version:
        return EMPTY
    rows = await uow.execute(
        select(LISTS.c.kind, LISTS.c.product_id, LISTS.c["items"]).where(
            LISTS.c.version == version,
            LISTS.c.product_id.in_(sorted({product for _, product in wanted})),
        )
    )
    by_key = {
        (kind, product_id): tuple(Item.of_row(r) for r in items)
        for kind, product_id, items in rows
        if (kind, product_id) in wanted
    }
    return Lists(version, by_key)


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
    async with loaded.lock:
        if time.monotonic() - loaded.checked < runtime.settings.recs_reload_seconds:
            return loaded.lists
        if uow is not None:
            await _refresh(loaded, uow)
        else:
            async with runtime.db.transaction() as own:
                await _refresh(loaded, own)
        loaded.checked = time.monotonic()
    return loaded.lists


async def _refresh(loaded: Loaded, uow: UnitOfWork) -> None:
    if await current_version(uow) != loaded.lists.version:
        loaded.lists = await read(uow)
