"""The Redis copy of active carts' lines (when Redis is configured): read-through, tagged with
the cart's version, invalidated once a change has committed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from mercato.cart.common import CartLineInfo
from mercato.db import UnitOfWork

if TYPE_CHECKING:
    from mercato.runtime import Runtime

log = logging.getLogger("mercato.cart")

_PENDING = "mercato.cart.invalidate"
_background: set[asyncio.Task[None]] = set()


class CartCache:
    """The lines of active carts in Redis at ``cart:<id>``, tagged with the cart's version.

    Only committed rows are ever written here (on reads); every change bumps the version, and an
    entry whose version is not the database's is ignored, so the database stays the truth even
    when an invalidation is lost. Redis errors fall back to the database.
    """

    def __init__(self, redis: Redis, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def key(cart_id: str) -> str:
        return f"cart:{cart_id}"

    async def get(self, cart_id: str, version: int) -> tuple[CartLineInfo, ...] | None:
        try:
            raw = await self.redis.get(self.key(cart_id))
        except RedisError:
            log.warning("cart cache read failed for %s", cart_id, exc_info=True)
            return None
        if raw is None:
            return None
        try:
            data = json.loads(raw)
            if data["version"] != version:
                return None
            return tuple(_line_from_json(cart_id, item) for item in data["lines"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed cart cache entry for %s", cart_id)
            return None

    async def put(self, cart_id: str, version: int, lines: Iterable[CartLineInfo]) -> None:
        doc = {"version": version, "lines": [_line_to_json(line) for line in lines]}
        try:
            await self.redis.set(self.key(cart_id), json.dumps(doc), ex=self.ttl_seconds)
        except RedisError:
            log.warning("cart cache write failed for %s", cart_id, exc_info=True)

    async def delete(self, *cart_ids: str) -> None:
        if not cart_ids:
            return
        try:
            await self.redis.delete(*(self.key(c) for c in cart_ids))
        except RedisError:
            log.warning("cart cache invalidation failed for %s", cart_ids, exc_info=True)

    def invalidate_after_commit(self, uow: UnitOfWork, cart_ids: Iterable[str]) -> None:
        """Delete the entries once the unit of work has committed (never before: a reader
        could otherwise re-cache the old rows in between; never after a rollback)."""
        pending: set[str] | None = uow.info.get(_PENDING)
        if pending is None:
            pending = uow.info[_PENDING] = set()
            uow.after_commit(lambda: self._delete_later(pending))
        pending.update(cart_ids)

    def _delete_later(self, ids: set[str]) -> None:
        # In the background: the answer to the shopper need not wait for Redis.
        task = asyncio.get_running_loop().create_task(self.delete(*sorted(ids)))
        _background.add(task)
        task.add_done_callback(_background.discard)


def cache_for(runtime: Runtime) -> CartCache | None:
    """The process's cart cache when Redis is configured (one per runtime)."""
    if runtime.redis is None:
        return None
    cache = runtime.extras.get("cart.cache")
    if not isinstance(cache, CartCache) or cache.redis is not runtime.redis:
        cache = CartCache(runtime.redis, runtime.settings.cart_cache_ttl_seconds)
        runtime.extras["cart.cache"] = cache
    return cache


async def drain_invalidations() -> None:
    """Wait for scheduled cache deletions (tests and orderly shutdown)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


def invalidate(uow: UnitOfWork, cache: CartCache | None, *cart_ids: str) -> None:
    if cache is not None:
        cache.invalidate_after_commit(uow, cart_ids)


def _line_to_json(line: CartLineInfo) -> dict[str, Any]:
    return {
        "id": line.id,
        "variant_id": line.variant_id,
        "seller_id": line.seller_id,
        "quantity": line.quantity,
        "unit_price_seen": line.unit_price_seen,
        "currency": line.currency,
        "added_at": line.added_at.isoformat(),
        "updated_at": line.updated_at.isoformat(),
    }


def _line_from_json(cart_id: str, item: dict[str, Any]) -> CartLineInfo:
    return CartLineInfo(
        id=str(item["id"]),
        cart_id=cart_id,
        variant_id=str(item["variant_id"]),
        quantity=int(item["quantity"]),
        unit_price_seen=int(item["unit_price_seen"]),
        currency=str(item["currency"]),
        added_at=datetime.fromisoformat(item["added_at"]),
        updated_at=datetime.fromisoformat(item["updated_at"]),
        seller_id=item.get("seller_id") or None,
    )
