"""Claims: one holder at a time, across every worker process of the shop, for a named piece of
background work (an outbox consumer, a periodic job).

A claim is a row of ``worker_claims``: who holds it and until when (a lease), and, for a
periodic job, when the shop next wants it run (``due_at``, shared by every worker, so that two
workers split a job's turns instead of both running each one).

* **Taking** is one conditional ``UPDATE``: the row is free (nobody holds it, or the holder's
  lease has passed). On PostgreSQL the row is chosen with ``FOR UPDATE SKIP LOCKED``, so a
  worker never waits behind another one's claim: it moves on to other work. On SQLite writes
  are serialised by the database itself (``BEGIN IMMEDIATE``), so the same conditional update
  admits one claimant at a time. A missing row is inserted (``ON CONFLICT DO NOTHING``).
* **Holding** renews the lease every third of its length while the work runs (one ``UPDATE``,
  only while working: an idle worker holds nothing and renews nothing), and writes that must
  only be made by the holder check it in their own transaction (:meth:`Claimant.fence`).
* **Releasing** clears the holder at once when the work ends. A worker that dies (``kill -9``)
  releases nothing: its leases pass after ``MERCATO_WORKER_LEASE_SECONDS`` and another worker
  takes over.

Within one process, callers of the same claim also queue on a lock of the process, so that a
caller that must see the work done (``mercato worker --once``, a test) waits for a pass already
running here instead of skipping it; a claim held by another process is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import String, Table, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, Database, UnitOfWork, UTCDateTime, utcnow

log = logging.getLogger("mercato.claims")


class WorkerClaim(Base):
    __tablename__ = "worker_claims"

    name: Mapped[str] = mapped_column(String(120), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(120), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    """A periodic job: when the shop next wants it run (whichever worker runs it)."""
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


CLAIMS = cast(Table, WorkerClaim.__table__)


class ClaimLost(RuntimeError):
    """The lease passed and another worker took the claim over: stop writing as its holder."""


def process_holder() -> str:
    """A name unique to this process (host, pid and a random part: a restarted process with a
    recycled pid is a new holder)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


_HOLDER = process_holder()
_LOCAL: dict[str, asyncio.Lock] = {}


def _local_lock(name: str) -> asyncio.Lock:
    lock = _LOCAL.get(name)
    if lock is None:
        lock = _LOCAL[name] = asyncio.Lock()
    return lock


@dataclass(frozen=True, slots=True)
class ClaimState:
    """A claim's row as another worker sees it."""

    holder: str | None
    lease_until: datetime | None
    due_at: datetime | None


@dataclass
class Held:
    """A claim this process holds while a ``with`` block runs."""

    name: str
    lost: bool = False
    """The lease could not be renewed: another worker may have taken over."""
    due_at: datetime | None = None
    """A periodic job: when it is next due, written as the claim is released."""


class Claimant:
    """Takes, renews and releases claims for this process on one database."""

    def __init__(self, db: Database, lease_seconds: float, holder: str | None = None) -> None:
        self.db = db
        self.lease = timedelta(seconds=lease_seconds)
        self.holder = holder or _HOLDER

    def _free(self, name: str, now: datetime, *, due_only: bool) -> Any:
        c = CLAIMS.c
        free = and_(c.name == name, or_(c.holder.is_(None), c.lease_until <= now))
        if due_only:
            free = and_(free, or_(c.due_at.is_(None), c.due_at <= now))
        return free

    async def take(self, name: str, *, due_only: bool = False) -> bool:
        """Take ``name`` if it is free (with ``due_only``: and due); whether we got it."""
        now = utcnow()
        values = {"holder": self.holder, "lease_until": now + self.lease, "taken_at": now}
        async with self.db.transaction() as uow:
            free = self._free(name, now, due_only=due_only)
            if uow.is_sqlite:
                statement = update(CLAIMS).where(free)
            else:
                # Skip a row another worker is renewing or taking right now: it is theirs.
                chosen = select(CLAIMS.c.name).where(free).with_for_update(skip_locked=True)
                statement = update(CLAIMS).where(CLAIMS.c.name == chosen.scalar_subquery())
            if await uow.changed(statement.values(**values)):
                return True
            exists = await uow.scalar(select(CLAIMS.c.name).where(CLAIMS.c.name == name))
            if exists is not None:
                return False
            insert = postgresql.insert(CLAIMS) if not uow.is_sqlite else sqlite.insert(CLAIMS)
            return bool(
                await uow.changed(
                    insert.values(name=name, **values).on_conflict_do_nothing(
                        index_elements=[CLAIMS.c.name]
                    )
                )
            )

    async def state(self, name: str) -> ClaimState | None:
        async with self.db.transaction() as uow:
            row = (
                await uow.execute(
                    select(CLAIMS.c.holder, CLAIMS.c.lease_until, CLAIMS.c.due_at).where(
                        CLAIMS.c.name == name
                    )
                )
            ).first()
        return None if row is None else ClaimState(row.holder, row.lease_until, row.due_at)

    async def fence(self, uow: UnitOfWork, name: str) -> None:
        """In the caller's transaction: renew the lease, or raise :class:`ClaimLost` when this
        process no longer holds the claim (so the caller's writes roll back)."""
        renewed = await uow.changed(
            update(CLAIMS)
            .where(CLAIMS.c.name == name, CLAIMS.c.holder == self.holder)
            .values(lease_until=utcnow() + self.lease)
        )
        if not renewed:
            raise ClaimLost(name)

    async def _renew(self, name: str) -> bool:
        try:
            async with self.db.transaction() as uow:
                await self.fence(uow, name)
        except ClaimLost:
            return False
        return True

    async def release(self, name: str, *, due_at: datetime | None = None) -> None:
        values: dict[str, Any] = {"holder": None, "lease_until": None}
        if due_at is not None:
            values["due_at"] = due_at
        async with self.db.transaction() as uow:
            await uow.execute(
                update(CLAIMS)
                .where(CLAIMS.c.name == name, CLAIMS.c.holder == self.holder)
                .values(**values)
            )

    async def _keep(self, held: Held) -> None:
        pause = self.lease.total_seconds() / 3
        while True:
            await asyncio.sleep(pause)
            try:
                if not await self._renew(held.name):
                    held.lost = True
                    log.warning("claim %s was taken over while this worker held it", held.name)
                    return
            except Exception:
                log.exception("claim %s: the lease could not be renewed", held.name)

    @contextlib.asynccontextmanager
    async def holding(
        self, name: str, *, due_only: bool = False, wait_local: bool = True
    ) -> AsyncIterator[Held | None]:
        """Hold ``name`` while the block runs (None: another worker holds it, or, with
        ``due_only``, it is not due yet). The lease is renewed in the background and the claim
        released at the end (with ``held.due_at`` when the block set it)."""
        lock = _local_lock(name)
        if lock.locked() and not wait_local:
            yield None
            return
        async with lock:
            if not await self.take(name, due_only=due_only):
                yield None
                return
            held = Held(name)
            keeper = asyncio.create_task(self._keep(held))
            try:
                yield held
            finally:
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper
                try:
                    await asyncio.shield(self.release(name, due_at=held.due_at))
                except Exception:
                    log.exception("claim %s could not be released; its lease will pass", name)
