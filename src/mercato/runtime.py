"""The per-process runtime (settings, database, optional Redis) and FastAPI dependencies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request
from redis.asyncio import BlockingConnectionPool, Redis

from mercato.db import Database, UnitOfWork
from mercato.openapi import raises
from mercato.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: Redis | None = None
    # Module-owned singletons (rate limiters, caches, the search reader) keyed by module name.
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime:
        db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            echo=settings.db_echo,
            connect_timeout=settings.db_connect_timeout,
            pool_timeout=settings.db_pool_timeout,
        )
        redis = None
        if settings.redis_url:
            # A blocking pool: past ``redis_max_connections`` concurrent calls a request waits
            # for a connection (up to ``redis_pool_timeout``) instead of failing at once.
            pool = BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=settings.redis_max_connections,
                timeout=settings.redis_pool_timeout,
                # An unreachable Redis fails a call quickly; callers fall back to the database
                # or to this process (see docs/operations.md, "When Redis is down").
                socket_connect_timeout=settings.redis_socket_timeout,
                socket_timeout=settings.redis_socket_timeout,
            )
            redis = Redis.from_pool(pool)
        return cls(settings=settings, db=db, redis=redis)

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.dispose()


@raises(503)  # database_unavailable: whatever reads the database may meet it down
async def get_runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop on every
    # request for an attribute read.
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_uow(runtime: RuntimeDep) -> AsyncIterator[UnitOfWork]:
    """The request's unit of work: one transaction, committed before the response is sent,
    rolled back on error. An endpoint that starts a workflow takes none (the workflow runs its
    steps in transactions of their own)."""
    async with runtime.db.transaction() as uow:
        yield uow


UowDep = Annotated[UnitOfWork, Depends(get_uow, scope="function")]
