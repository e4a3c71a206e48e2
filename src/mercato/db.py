"""Engines, the unit of work, and every SQLite/PostgreSQL difference in one place.

**The unit of work.** Every service function takes a :class:`UnitOfWork` first: one database
transaction, opened and closed by its caller (a router's request dependency, a workflow step,
a worker job), never by the service. A ``UnitOfWork`` is an ``AsyncSession``, so the ORM
(catalog and back-office CRUD) and Core statements (the hot paths: one conditional
``UPDATE … RETURNING`` where it can) run on the same transaction with no bridging. Callers open
one with :meth:`Database.transaction` (no retry) or :meth:`Database.run` (the whole unit retried
when PostgreSQL reports a deadlock or a serialization failure), and can ask for work to be done
once it has committed (:meth:`UnitOfWork.after_commit`: wake the worker, forget a cached copy).
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, DateTime, MetaData, event, make_url
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, CursorResult, Dialect
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import NullPool
from sqlalchemy.sql import Executable
from sqlalchemy.types import TypeDecorator

log = logging.getLogger("mercato.db")

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_clock: ContextVar[Callable[[], datetime] | None] = ContextVar("mercato_clock", default=None)


def utcnow() -> datetime:
    """Now, in UTC: the one clock every module reads (never ``datetime.now`` directly)."""
    override = _clock.get()
    return datetime.now(UTC) if override is None else override()


@contextmanager
def clock_override(now: Callable[[], datetime]) -> Iterator[None]:
    """Make :func:`utcnow` answer ``now()`` in this context (and the tasks started in it).

    Only the demo's history generator uses it: it drives the real services (checkout,
    shipping, deliveries, returns, reviews) through ninety past days, so what they write
    carries the simulated moment. Nothing serving requests or running the worker sets it.
    """
    token = _clock.set(now)
    try:
        yield
    finally:
        _clock.reset(token)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; Mercato stores aware UTC timestamps only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON documents: JSONB on PostgreSQL (indexable), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take over transaction control so that BEGIN IMMEDIATE can be issued (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A deferred transaction that later writes can fail with SQLITE_BUSY without waiting when a
    # concurrent writer holds the lock; taking the write lock up front makes writers queue on the
    # busy timeout instead, which is how SQLite serialises our conditional UPDATEs.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


AfterCommit = Callable[[], Awaitable[None] | None]

# PostgreSQL's "deadlock detected" and "could not serialize access": the whole transaction may
# simply be run again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


def is_retryable(exc: BaseException) -> bool:
    """Whether the database asked us to retry the whole transaction (deadlock, serialization)."""
    if not isinstance(exc, DBAPIError):
        return False
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in _RETRYABLE_SQLSTATES


# Connection trouble, by SQLSTATE: class 08 (connection exceptions), the server shutting down
# or starting up (57P01-57P03), and no connection slot left (53300).
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLite's equivalents: the file cannot be opened or written, or the lock did not come in time.
_SQLITE_UNAVAILABLE = ("database is locked", "unable to open database file", "disk i/o error")
# Where a bare OSError or TimeoutError comes from when it is the database that cannot be reached.
_CONNECTING_MODULES = ("sqlalchemy.pool", "sqlalchemy.engine", "sqlalchemy.dialects", "asyncpg")


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached (down, restarting, out of
    connections, the pool's wait ran out) rather than that a statement was wrong."""
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        code = str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")
        if code.startswith("08") or code in _UNAVAILABLE_SQLSTATES:
            return True
        if isinstance(orig, OSError | TimeoutError):
            return True
        return isinstance(exc, OperationalError) and any(
            text in str(orig).lower() for text in _SQLITE_UNAVAILABLE
        )
    if isinstance(exc, OSError | TimeoutError):
        # asyncpg's own connect errors (refused, timed out) reach us unwrapped.
        tb = exc.__traceback__
        while tb is not None:
            module = str(tb.tb_frame.f_globals.get("__name__", ""))
            if module.startswith(_CONNECTING_MODULES):
                return True
            tb = tb.tb_next
    return False


class UnitOfWork(AsyncSession):
    """One database transaction: what every service function takes as its first argument.

    It is an ``AsyncSession`` (ORM and Core statements alike, on one connection), plus the name
    of the backend for the few statements that differ, and callbacks to run after the commit.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._after_commit: list[AfterCommit] = []

    @property
    def dialect(self) -> Dialect:
        """The backend's SQLAlchemy dialect (``uow.dialect.name``: sqlite or postgresql)."""
        bind = self.bind
        assert bind is not None, "a unit of work is always bound to the process's engine"
        return bind.dialect

    @property
    def is_sqlite(self) -> bool:
        return self.dialect.name == "sqlite"

    async def changed(self, statement: Executable, params: Any = None) -> int:
        """Run an ``INSERT``/``UPDATE``/``DELETE``; how many rows it changed (what every
        conditional update is judged by)."""
        result = await self.execute(statement, params)
        return int(cast(CursorResult[Any], result).rowcount)

    async def exec_driver_sql(self, sql: str) -> None:
        """A statement in the backend's own SQL (savepoints on the hot path)."""
        conn = await self.connection()
        await conn.exec_driver_sql(sql)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction (``SAVEPOINT``): an error inside undoes its statements and also
        forgets the after-commit callbacks registered inside it, then goes to the caller, whose
        transaction carries on (a group commit sets one failing member aside this way)."""
        callbacks = len(self._after_commit)
        info = dict(self.info)
        try:
            async with self.begin_nested():
                yield
        except BaseException:
            del self._after_commit[callbacks:]
            self.info.clear()
            self.info.update(info)
            raise

    def after_commit(self, callback: AfterCommit) -> None:
        """Run ``callback`` once this transaction has committed (never if it rolls back).
        A failing callback is logged: the transaction is already durable."""
        self._after_commit.append(callback)

    async def _run_after_commit(self) -> None:
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            try:
                result = callback()
                if result is not None:
                    await result
            except Exception:
                log.exception("after-commit callback %r failed", callback)


class Listener:
    """A PostgreSQL ``LISTEN`` on its own connection (see :meth:`Database.listen`)."""

    def __init__(self, conn: Any, channel: str, callback: Callable[[], None]) -> None:
        self._conn = conn
        self.channel = channel
        self._callback = callback
        self.alive = True

    def _notified(self, *_args: Any) -> None:
        self._callback()

    def _terminated(self, *_args: Any) -> None:
        # The server went away: wake the owner, which polls and listens again later.
        self.alive = False
        self._callback()

    async def close(self) -> None:
        self.alive = False
        try:
            await self._conn.close(timeout=2)
        except Exception:  # already gone
            self._conn.terminate()


class Database:
    """One engine and its unit-of-work factory for a process."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        echo: bool = False,
        connect_timeout: float = 5.0,
        pool_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._sqlite_path = make_url(url).database if self.is_sqlite else None
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            if ":memory:" in url:
                raise ValueError("in-memory SQLite is not supported: use a file")
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        else:
            # A server that does not answer fails a request within this, instead of asyncpg's
            # minute; and a connection the server dropped (a restart) is found by SQLAlchemy's
            # disconnect detection, which recycles the whole pool on that first error.
            kwargs["connect_args"] = {"timeout": connect_timeout}
        if pool_size <= 0:
            kwargs["poolclass"] = NullPool
        else:
            kwargs["pool_size"] = pool_size
            kwargs["max_overflow"] = max_overflow
            kwargs["pool_timeout"] = pool_timeout
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        # The same pool, its connections lent in autocommit (see read_first).
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        self.sessionmaker = async_sessionmaker(
            self.engine, class_=UnitOfWork, expire_on_commit=False
        )

    @property
    def dialect(self) -> str:
        return "sqlite" if self.is_sqlite else "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """One unit of work: committed on success, rolled back on any error. Not retried; use
        :meth:`run` where a deadlock may be met (anything that locks stock or money rows)."""
        async with self.sessionmaker() as uow:
            async with uow.begin():
                yield uow
            await uow._run_after_commit()

    async def read_first(self, statement: Executable, params: dict[str, Any]) -> Any:
        """The first row of one read (``None`` if none), outside any unit of work. On
        PostgreSQL it runs in autocommit: one round trip instead of three (``BEGIN``, the
        query, ``COMMIT``) and no session, for a hot single-statement read such as a request's
        sign-in check. A single statement sees one snapshot anyway."""
        if self.is_sqlite:
            async with self.transaction() as uow:
                return (await uow.execute(statement, params)).first()
        async with self._autocommit.connect() as conn:
            return (await conn.execute(statement, params)).first()

    async def run(self, work: Callable[[UnitOfWork], Awaitable[T]], *, attempts: int = 3) -> T:
        """Run ``work`` in a unit of work of its own, again (bounded) if PostgreSQL reports a
        deadlock or a serialization failure; every other error goes to the caller."""
        for attempt in range(1, attempts + 1):
            try:
                async with self.transaction() as uow:
                    return await work(uow)
            except DBAPIError as exc:
                if attempt == attempts or not is_retryable(exc):
                    raise
                log.info("transaction retried after %s (attempt %d)", exc.orig, attempt)
        raise AssertionError("unreachable")

    async def listen(self, channel: str, callback: Callable[[], None]) -> Listener | None:
        """PostgreSQL only: call ``callback`` on every ``NOTIFY`` on ``channel`` (from any
        process) until the returned listener is closed; None on SQLite or when it cannot
        connect (the caller polls instead)."""
        if self.is_sqlite:
            return None
        import asyncpg

        url = make_url(self.url).set(drivername="postgresql")
        try:
            conn = await asyncpg.connect(url.render_as_string(hide_password=False))
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("cannot listen on %s (%s); polling instead", channel, exc)
            return None
        listener = Listener(conn, channel, callback)
        await conn.add_listener(channel, listener._notified)
        conn.add_termination_listener(listener._terminated)
        return listener

    def write_marker(self) -> tuple[int, ...] | None:
        """SQLite: a fingerprint of the database files that changes whenever any process
        commits (the write-ahead log grows or is checkpointed). A ``stat`` costs next to
        nothing, so an idle worker can look every half second without running a query.
        None on PostgreSQL (it has ``LISTEN``)."""
        if self._sqlite_path is None:
            return None
        marker: list[int] = []
        for path in (self._sqlite_path, self._sqlite_path + "-wal"):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                marker += [0, 0]
            else:
                marker += [st.st_mtime_ns, st.st_size]
        return tuple(marker)

    @asynccontextmanager
    async def raw_connection(self) -> AsyncIterator[AsyncConnection]:
        """A bare Core connection in one transaction, for migrations and maintenance only."""
        async with self.engine.begin() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.engine.dispose()
