"""The compact lists and their copies: the arrays give back the items they were made from, the
database read streams them, and with Redis configured a build leaves a copy there that a
process loads first, falling back to the database when the copy is gone or Redis is down."""

from __future__ import annotations

import math

import pytest
from redis.asyncio import Redis

from mercato.db import utcnow
from mercato.recommendations import service, store
from mercato.recommendations.store import Item
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.recommendations.conftest import make_shop, sell_history

ROWS = [
    (("popular", ""), [Item("b", 9.0), Item("a", 7.5)]),
    (("bought_together", "a"), [Item("b", 2.5, 0.5, 0.25, 2.5), Item("c", 1.25, 0.75, 0.5, 1.25)]),
    (("also_bought", "c"), [Item("a", 0.375)]),
    (("also_bought", "b"), [Item("c", 0.5), Item("a", 0.25)]),
]


def test_compact_lists_give_back_their_items() -> None:
    lists = store.of_items(3, ROWS, "rp3beta")
    for (kind, product_id), items in ROWS:
        assert list(lists.of(kind, product_id)) == items
    assert lists.of("also_bought", "a") == () and lists.of("also_bought", "zz") == ()
    assert lists.of("bought_together", "a" * 100) == ()
    assert (lists.listed("also_bought"), lists.listed("bought_together")) == (2, 1)
    again = store.from_blob(store.to_blob(lists.compact()))
    assert (again.version, again.model) == (3, "rp3beta")
    assert [i.product_id for i in again.of("also_bought", "b")] == ["c", "a"]
    first = again.of("bought_together", "a")[0]
    assert first.confidence is not None and math.isclose(first.confidence, 0.5)
    assert again.of("also_bought", "b")[0].lift is None


async def _built(runtime: Runtime) -> int:
    shop = await make_shop(runtime.db)
    await sell_history(runtime.db, shop)
    return (await service.build(runtime)).version


async def _load(runtime: Runtime, redis: Redis | None) -> store.Lists:
    async with runtime.db.transaction() as uow:
        return await store.load(uow, redis, await store.current_version(uow))


async def test_the_database_read_is_what_was_written(runtime: Runtime) -> None:
    async with runtime.db.transaction() as uow:
        version = await store.write(uow, ROWS, built_at=utcnow(), orders_seen=0, model="itemknn")
    async with runtime.db.transaction() as uow:
        lists = await store.read(uow)
    assert (lists.version, lists.model) == (version, "itemknn")
    for (kind, product_id), items in ROWS:
        assert [i.product_id for i in lists.of(kind, product_id)] == [i.product_id for i in items]


async def test_a_build_copies_the_lists_to_redis_and_processes_load_them_from_there(
    runtime: Runtime,
) -> None:
    if runtime.redis is None:
        pytest.skip("Redis runs with the production-shaped backend")
    version = await _built(runtime)
    copy = await store.from_redis(runtime.redis, version)
    assert copy is not None and copy.version == version
    from_db = await _load(runtime, None)
    for kind in ("bought_together", "also_bought"):
        assert copy.listed(kind) == from_db.listed(kind) > 0
    # The copy is what a process loads: with the database rows gone it still serves them.
    async with runtime.db.transaction() as uow:
        await uow.execute(store.LISTS.delete())
    assert (await _load(runtime, runtime.redis)).listed("also_bought") == copy.listed("also_bought")


async def test_a_missing_copy_is_read_from_the_database_and_put_back(runtime: Runtime) -> None:
    if runtime.redis is None:
        pytest.skip("Redis runs with the production-shaped backend")
    version = await _built(runtime)
    await runtime.redis.flushall()
    lists = await _load(runtime, runtime.redis)
    assert lists.version == version and lists.listed("also_bought") > 0
    assert await store.from_redis(runtime.redis, version) is not None
    # A newer build replaces the copy: older versions' keys go.
    newer = (await service.build(runtime)).version
    keys = [k.decode() async for k in runtime.redis.scan_iter(match="recommendations:*")]
    assert keys and all(k.startswith(f"recommendations:lists:{newer}:") for k in keys)


async def test_with_redis_down_builds_and_loads_use_the_database(settings: Settings) -> None:
    down = settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"})
    runtime = Runtime.from_settings(down)
    try:
        version = await _built(runtime)
        lists = await _load(runtime, runtime.redis)
        assert lists.version == version and lists.listed("bought_together") > 0
        assert (await service.served(runtime)).version == version
    finally:
        await runtime.close()
