"""The search index follows the outbox: catalog, stock and category changes are noted as they
are delivered and applied in batches by the ``search.sync`` job, so a change is searchable
within a second (the job runs every 0.2 s; readers reload every 0.1 s)."""

from __future__ import annotations

from mercato.events import Event, dispatcher
from mercato.runtime import Runtime
from mercato.search import service
from mercato.worker import job

SYNC_INTERVAL = 0.2


async def note_change(_runtime: Runtime, event: Event) -> None:
    service.PENDING.note(event.type, event.aggregate_id, event.payload, event.occurred_at)


async def sync(runtime: Runtime) -> int:
    # The API process that runs the worker itself (the one-command default) builds its index
    # when there is none; a separate worker leaves that to ``mercato reindex``.
    return await service.sync_index(runtime, bootstrap=runtime.settings.embedded_worker)


CONSUMER = service.consumer_name()
if CONSUMER is not None:
    dispatcher.register(CONSUMER, service.EVENT_TYPES, note_change)
    job("search.sync", interval=SYNC_INTERVAL)(sync)
