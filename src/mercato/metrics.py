"""Prometheus metrics: what the code counts as it works, and the exposition of a scrape.

Counters and histograms are counted where things happen (requests, workflow outcomes,
reservation refusals). Gauges that describe the shop's state (the outbox backlog, workflow
runs, flash-sale queues) are not kept in memory at all: :mod:`mercato.observability` reads them
from the database when ``/metrics`` is scraped, so every API process answers the same and a
worker that crashed leaves no stale value behind.

**Several API processes.** ``mercato serve --workers N`` sets ``PROMETHEUS_MULTIPROC_DIR`` to a
private directory before the processes start; prometheus-client then keeps each process's
counts in a memory-mapped file there and a scrape of any one process sums them all (see
docs/architecture.md, "Metrics with several processes"). Without it, counts are the process's
own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import Metric

CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

HTTP_REQUESTS = Counter(
    "mercato_http_requests",
    "HTTP requests answered, by route template (not the raw path) and status",
    ["method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "mercato_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
WORKFLOW_OUTCOMES = Counter(
    "mercato_workflow_outcomes",
    "Workflow runs that ended: completed, failed (refused before anything was done) or "
    "compensated (failed, and what it had done was undone). Checkout: completed = order placed",
    ["workflow", "outcome"],
)
RESERVATION_FAILURES = Counter(
    "mercato_reservation_failures",
    "Stock reservations refused, by problem code (out_of_stock, not_deliverable, stock_contention)",
    ["reason"],
)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class _Families:
    """A collector handing out metric families computed before the scrape."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(computed: Iterable[Metric] = ()) -> bytes:
    """The text a scrape gets: the counted metrics (of every process, in multiprocess mode)
    followed by ``computed`` (gauges read for this scrape)."""
    if multiprocess_dir() is not None:
        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)  # type: ignore[no-untyped-call]
    else:
        counted = REGISTRY
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_Families(computed))
    return generate_latest(counted) + generate_latest(extra)
