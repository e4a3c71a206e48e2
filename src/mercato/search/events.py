"""The search index follows the outbox: catalog, stock and category changes are noted as they
are delivered and applied in batches by the ``search.sync`` job, which runs right after every
outbox pass that delivered something, so a change is searchable within a second (readers
reload at most every 0.1 s, when they are asked)."""

from __future__ import annotations

from mercato.events import Consumer, Event
from mercato.runtime import Runtime
from mercato.search import pagecache, service
from mercato.worker import Job

SYNC_INTERVAL = 0.2
"""How often ``mercato search follow`` polls; the worker's job runs after deliveries."""
SYNC_JOB_INTERVAL = 30.0


async def note_change(_runtime: Runtime, event: Event) -> None:
    service.PENDING.note(event.type, event.aggregate_id, event.payload, event.occurred_at)


async def sync(runtime: Runtime) -> int:
    # The API process that runs the worker itself (the one-command default) builds its index
    # when there is none; a separate worker leaves that to ``mercato reindex``.
    return await service.sync_index(runtime, bootstrap=runtime.settings.embedded_worker)


CONSUMER = service.consumer_name()
# The consumer is taken only by the process writing this host's index (``feeds_index``), and
# the sync is this host's own work (not claimed shop-wide): the index's writer lock decides.
# The page cache is one for all processes (Redis) or lives in the process running the worker.
PAGE_CACHE = Consumer.of(pagecache.CONSUMER, pagecache.EVENT_TYPES, service.forget_changed)
CONSUMERS = (
    (Consumer.of(CONSUMER, service.EVENT_TYPES, note_change, ready=service.feeds_index),)
    if CONSUMER
    else ()
) + (PAGE_CACHE,)
JOBS = (
    (Job("search.sync", SYNC_JOB_INTERVAL, sync, after_delivery=True, claimed=False),)
    if CONSUMER
    else ()
)
