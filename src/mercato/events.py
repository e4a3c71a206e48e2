"""Domain events, the transactional outbox, and the dispatcher that delivers them.

A module writes its events with :func:`publish` on its unit of work (and so in the same
transaction) as the change they describe. The worker calls :meth:`Dispatcher.dispatch_once`,
which hands each event at least once to every consumer registered for its type and records the
delivery per (consumer, event); consumers must therefore be idempotent. Modules declare their
consumers as data (``CONSUMERS`` in their ``events.py``); :func:`mercato.modules.wire` registers
them.

**One deliverer per consumer.** Several workers may run against one database: while one of
them delivers to a consumer it holds that consumer's claim (:mod:`mercato.claims`; ``FOR UPDATE
SKIP LOCKED`` on PostgreSQL), so no two hand events to the same consumer at once and each
consumer sees its events in order. The delivery record is written only while the claim is still
held. A worker killed between a handler and its record leaves the event undelivered: after its
lease passes, another worker hands it over again, hence "at least once" and idempotent handlers.

**Waking the worker.** A committed transaction that wrote events sets every registered
:func:`waker` in this process at once (the embedded worker of the one-command shop delivers
within milliseconds and otherwise sleeps); across processes on PostgreSQL a trigger on the
outbox sends ``NOTIFY mercato_outbox``, which the worker listens to (see ``db.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Index, Integer, String, func, insert, select
from sqlalchemy.orm import Mapped, mapped_column

from mercato.claims import Claimant, ClaimLost
from mercato.db import Base, JSONType, UnitOfWork, UTCDateTime, utcnow
from mercato.ids import new_id
from mercato.logs import bound_request_id, pop_request_id, with_request_id

if TYPE_CHECKING:
    from mercato.runtime import Runtime

log = logging.getLogger("mercato.events")

_SEQ = BigInteger().with_variant(Integer(), "sqlite")


class OutboxEvent(Base):
    __tablename__ = "outbox_events"

    seq: Mapped[int] = mapped_column(_SEQ, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(40), unique=True)
    type: Mapped[str] = mapped_column(String(80), index=True)
    aggregate_id: Mapped[str] = mapped_column(String(40))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OutboxDelivery(Base):
    """Which consumer has handled which event (the at-least-once bookkeeping)."""

    __tablename__ = "outbox_deliveries"

    consumer: Mapped[str] = mapped_column(String(80), primary_key=True)
    event_seq: Mapped[int] = mapped_column(_SEQ, primary_key=True)
    delivered_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_outbox_deliveries_event_seq", "event_seq"),)


@dataclass(frozen=True, slots=True)
class Event:
    """An event as consumers see it."""

    seq: int
    id: str
    type: str
    aggregate_id: str
    payload: dict[str, Any]
    occurred_at: datetime
    request_id: str | None = None
    """The request that published it (its handler's log lines carry it too)."""


OUTBOX_CHANNEL = "mercato_outbox"
"""The PostgreSQL ``NOTIFY`` channel the outbox trigger signals on (migration 0013)."""

_WAKERS: set[asyncio.Event] = set()


def waker() -> asyncio.Event:
    """An event set whenever a transaction of this process commits new outbox events."""
    event = asyncio.Event()
    _WAKERS.add(event)
    return event


def drop_waker(event: asyncio.Event) -> None:
    _WAKERS.discard(event)


def _wake() -> None:
    for event in _WAKERS:
        event.set()


def _wake_after_commit(uow: UnitOfWork) -> None:
    if _WAKERS and not uow.info.get("outbox_wake"):
        uow.info["outbox_wake"] = True
        uow.after_commit(_wake)


async def publish(
    uow: UnitOfWork, event_type: str, aggregate_id: str, payload: dict[str, Any]
) -> str:
    """Write one event into the outbox inside the caller's transaction; returns the event id."""
    event_id = new_id("evt")
    _wake_after_commit(uow)
    await uow.execute(
        insert(OutboxEvent.__table__),  # type: ignore[arg-type]
        [
            {
                "id": event_id,
                "type": event_type,
                "aggregate_id": aggregate_id,
                "payload": with_request_id(payload),
                "occurred_at": utcnow(),
            }
        ],
    )
    return event_id


async def publish_many(uow: UnitOfWork, events: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
    """Bulk form of :func:`publish` for imports and seeding: (type, aggregate_id, payload)."""
    now = utcnow()
    rows = [
        {
            "id": new_id("evt"),
            "type": t,
            "aggregate_id": a,
            "payload": with_request_id(p),
            "occurred_at": now,
        }
        for t, a, p in events
    ]
    if rows:
        _wake_after_commit(uow)
        await uow.execute(insert(OutboxEvent.__table__), rows)  # type: ignore[arg-type]


async def last_seq(uow: UnitOfWork) -> int:
    """The newest event's sequence number (0 for an empty outbox): the worker's cheap check."""
    return int(await uow.scalar(select(func.coalesce(func.max(OutboxEvent.seq), 0))) or 0)


# A consumer gets the process's runtime (database, settings, Redis) and one event.
Handler = Callable[["Runtime", Event], Awaitable[None]]


@dataclass(frozen=True)
class Consumer:
    """An outbox consumer: a name (its delivery bookkeeping), the event types it wants, and
    the handler. Declared by modules in ``CONSUMERS``, registered by ``modules.wire``."""

    name: str
    types: frozenset[str]
    handler: Handler
    ready: Callable[[Runtime], bool] | None = None
    """Whether this process can take the consumer now (the search index's feeder: only the
    process holding the host's index writer); None: always."""

    @property
    def claim(self) -> str:
        """The claim a worker holds while it delivers to this consumer."""
        return f"outbox:{self.name}"

    @classmethod
    def of(
        cls,
        name: str,
        types: Iterable[str],
        handler: Handler,
        ready: Callable[[Runtime], bool] | None = None,
    ) -> Consumer:
        return cls(name, frozenset(types), handler, ready)


@dataclass
class Dispatcher:
    consumers: dict[str, Consumer] = field(default_factory=dict)

    def register(self, consumer: Consumer) -> None:
        self.consumers[consumer.name] = consumer

    async def dispatch_once(
        self, runtime: Runtime, batch: int = 200, only: Iterable[str] | None = None
    ) -> int:
        """Deliver up to ``batch`` pending events to each consumer (or to the consumers named in
        ``only``); returns how many were handled.

        A failing handler stops that consumer at that event (order is kept) and is retried on
        the next pass; other consumers carry on.
        """
        names = set(only) if only is not None else None
        handled = 0
        for consumer in list(self.consumers.values()):
            if names is None or consumer.name in names:
                handled += await self._dispatch_consumer(runtime, consumer, batch)
        return handled

    async def _dispatch_consumer(self, runtime: Runtime, consumer: Consumer, batch: int) -> int:
        # A look without a claim first: a pass with nothing to deliver writes nothing.
        if not await self._pending(runtime, consumer, batch):
            return 0
        if consumer.ready is not None and not consumer.ready(runtime):
            return 0
        claimant = Claimant(runtime.db, runtime.settings.worker_lease_seconds)
        async with claimant.holding(consumer.claim) as held:
            if held is None:
                return 0  # another worker is delivering to this consumer
            count = 0
            # Read again under the claim: the last holder may have delivered these meanwhile.
            for ev in await self._pending(runtime, consumer, batch):
                with bound_request_id(ev.request_id):
                    try:
                        await consumer.handler(runtime, ev)
                    except Exception:
                        log.exception(
                            "consumer %s failed on event %s (%s)", consumer.name, ev.id, ev.type
                        )
                        break
                try:
                    async with runtime.db.transaction() as uow:
                        await claimant.fence(uow, consumer.claim)
                        uow.add(
                            OutboxDelivery(
                                consumer=consumer.name, event_seq=ev.seq, delivered_at=utcnow()
                            )
                        )
                except ClaimLost:
                    log.warning("consumer %s: taken over by another worker", consumer.name)
                    break
                count += 1
            return count

    async def _pending(self, runtime: Runtime, consumer: Consumer, batch: int) -> list[Event]:
        delivered = select(OutboxDelivery.event_seq).where(
            OutboxDelivery.consumer == consumer.name,
            OutboxDelivery.event_seq == OutboxEvent.seq,
        )
        query = (
            select(OutboxEvent)
            .where(OutboxEvent.type.in_(consumer.types), ~delivered.exists())
            .order_by(OutboxEvent.seq)
            .limit(batch)
        )
        async with runtime.db.transaction() as uow:
            rows = (await uow.scalars(query)).all()
            return [_event(r) for r in rows]


def _event(row: OutboxEvent) -> Event:
    payload = dict(row.payload)
    request_id = pop_request_id(payload)  # metadata: no consumer (nor webhook) sees it
    return Event(row.seq, row.id, row.type, row.aggregate_id, payload, row.occurred_at, request_id)


dispatcher = Dispatcher()


@dataclass(frozen=True, slots=True)
class Backlog:
    """A consumer's undelivered events: how many, and when the oldest occurred."""

    consumer: str
    undelivered: int
    oldest: datetime | None


async def backlog(uow: UnitOfWork) -> list[Backlog]:
    """Each registered consumer's backlog. The oldest undelivered event is found the way a
    delivery pass finds its batch (the same query and plan, with one row); the count then
    looks only at events from that one on, so a consumer that keeps up costs next to nothing."""
    found = []
    for consumer in dispatcher.consumers.values():
        pending = select(OutboxEvent.seq, OutboxEvent.occurred_at).where(
            OutboxEvent.type.in_(consumer.types),
            ~select(OutboxDelivery.event_seq)
            .where(
                OutboxDelivery.consumer == consumer.name,
                OutboxDelivery.event_seq == OutboxEvent.seq,
            )
            .exists(),
        )
        first = (await uow.execute(pending.order_by(OutboxEvent.seq).limit(1))).first()
        if first is None:
            found.append(Backlog(consumer.name, 0, None))
            continue
        count = await uow.scalar(
            select(func.count()).select_from(pending.where(OutboxEvent.seq >= first.seq).subquery())
        )
        found.append(Backlog(consumer.name, int(count or 0), first.occurred_at))
    return found
