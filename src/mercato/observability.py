"""What an operator reads from a running process: health and readiness probes, ``/metrics``,
and the request id on every answer and log line.

* ``GET /api/health`` (liveness): the process answers; no I/O, so a slow database never gets
  a healthy process restarted.
* ``GET /api/ready`` (readiness): the database answers and its schema is at the latest
  migration, and every check a module registered (:data:`readiness_checks`: the search index
  is open) passes. 200 with each check, or 503 problem+json ``not_ready`` naming the failing
  ones. Redis (when configured) is checked and reported but never makes a process unready: the
  shop sells without it (``status: degraded``), and taking every process out of service
  because Redis is down would stop the shop instead.
* ``GET /metrics``: Prometheus text. Counted metrics come from :mod:`mercato.metrics`; gauges
  of the shop's state are read from the database for the scrape (the outbox backlog, active
  workflow runs) and from modules' :data:`gauge_readers` (flash-sale queues).

The core never imports a domain module: modules take part through the two hook lists, which
``mercato.modules`` fills.
"""

from __future__ import annotations

import asyncio
import hmac
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mercato import events, metrics
from mercato.db import utcnow
from mercato.logs import acceptable_request_id, reset_request_id, set_request_id
from mercato.migrate import current_revision, head_revision
from mercato.openapi import problems
from mercato.problems import Problem, problem_response
from mercato.runtime import Runtime, RuntimeDep
from mercato.workflows import ACTIVE, RUNS

REQUEST_ID_HEADER = "x-request-id"
CHECK_TIMEOUT_SECONDS = 2.0

ReadinessCheck = Callable[[Runtime], Awaitable[str | None]]
"""``async def check(runtime) -> None`` when fine, else why not (a short sentence)."""

GaugeReader = Callable[[Runtime], Awaitable[Iterable[Metric]]]
"""``async def read(runtime) -> metric families``, called on each scrape."""

readiness_checks: dict[str, ReadinessCheck] = {}
gauge_readers: list[GaugeReader] = []


# -- the request id and request metrics ---------------------------------------------------------


def _route_of(scope: Scope) -> str:
    """The route template that answered (``/api/orders/{order_id}``), never the raw path: one
    series per route, however many ids are asked for."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class RequestObservability:
    """Give every request an id (the client's ``X-Request-ID`` when it is a sensible one),
    echo it on the answer, log the request's lines under it, and count and time the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = acceptable_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                raw = [h for h in message.get("headers", []) if h[0].lower() != b"x-request-id"]
                raw.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = raw
            await send(message)

        token = set_request_id(request_id)
        try:
            await self.app(scope, receive, with_id)
        except BaseException:
            # Left set on purpose: the 500 handler, outside this middleware, logs the error in
            # this same context, under this request's id (each request has a context of its own).
            raise
        else:
            reset_request_id(token)
        finally:
            labels = (scope["method"], _route_of(scope), str(status))
            metrics.HTTP_REQUESTS.labels(*labels).inc()
            metrics.HTTP_DURATION.labels(*labels).observe(time.perf_counter() - started)


# -- probes ------------------------------------------------------------------------------------


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Check(BaseModel):
    ok: bool
    detail: str | None = Field(default=None, description="Why not, when it is not")
    required: bool = Field(
        default=True, description="Whether failing it makes the process not ready"
    )


class Readiness(BaseModel):
    status: str = Field(
        examples=["ready"], description="ready, or degraded when an optional check fails"
    )
    checks: dict[str, Check]


@lru_cache(maxsize=1)
def _head() -> str | None:
    return head_revision()


async def _database(runtime: Runtime) -> str | None:
    current = await current_revision(runtime.db)
    if current != _head():
        return f"the schema is at {current or 'no revision'}, this release needs {_head()}"
    return None


async def _redis(runtime: Runtime) -> str | None:
    assert runtime.redis is not None
    await runtime.redis.ping()
    return None


OPTIONAL_CHECKS = frozenset({"redis"})


async def _run_check(name: str, check: ReadinessCheck, runtime: Runtime) -> Check:
    required = name not in OPTIONAL_CHECKS
    try:
        why = await asyncio.wait_for(check(runtime), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        why = f"no answer within {CHECK_TIMEOUT_SECONDS:g}s"
        return Check(ok=False, detail=why, required=required)
    except Exception as exc:
        return Check(ok=False, detail=f"{type(exc).__name__}: {exc}"[:300], required=required)
    return Check(ok=why is None, detail=why, required=required)


async def readiness(runtime: Runtime) -> dict[str, Check]:
    checks: dict[str, ReadinessCheck] = {"database": _database}
    if runtime.redis is not None:
        checks["redis"] = _redis
    checks.update(readiness_checks)
    names = list(checks)
    results = await asyncio.gather(*(_run_check(n, checks[n], runtime) for n in names))
    return dict(zip(names, results, strict=True))


# -- gauges read for a scrape ------------------------------------------------------------------


async def _core_gauges(runtime: Runtime) -> list[Metric]:
    undelivered = GaugeMetricFamily(
        "mercato_outbox_undelivered_events",
        "Outbox events not yet handled, per consumer",
        labels=["consumer"],
    )
    lag = GaugeMetricFamily(
        "mercato_outbox_oldest_undelivered_age_seconds",
        "Age of the oldest event a consumer has not handled yet (0: none waiting)",
        labels=["consumer"],
    )
    runs = GaugeMetricFamily(
        "mercato_workflow_runs",
        "Workflow runs not finished yet, by workflow and state (running, waiting, compensating)",
        labels=["workflow", "state"],
    )
    now = utcnow()
    async with runtime.db.transaction() as uow:
        for each in await events.backlog(uow):
            undelivered.add_metric([each.consumer], each.undelivered)
            age = (now - each.oldest).total_seconds() if each.oldest is not None else 0.0
            lag.add_metric([each.consumer], max(age, 0.0))
        query = (
            select(RUNS.c.workflow, RUNS.c.status, func.count())
            .where(RUNS.c.status.in_(ACTIVE))
            .group_by(RUNS.c.workflow, RUNS.c.status)
        )
        for workflow, status, count in await uow.execute(query):
            runs.add_metric([workflow, status], int(count))
    return [undelivered, lag, runs]


def gauge(
    name: str,
    documentation: str,
    labels: list[str],
    read: Callable[[Runtime], Awaitable[Mapping[tuple[str, ...], float]]],
) -> GaugeReader:
    """A gauge whose samples (label values -> value) a module reads for each scrape; the
    module needs to know nothing of Prometheus."""

    async def reader(runtime: Runtime) -> list[Metric]:
        family = GaugeMetricFamily(name, documentation, labels=labels)
        for values, value in sorted((await read(runtime)).items()):
            family.add_metric(list(values), value)
        return [family]

    return reader


async def scrape(runtime: Runtime) -> bytes:
    computed: list[Metric] = list(await _core_gauges(runtime))
    for reader in gauge_readers:
        computed.extend(await reader(runtime))
    return metrics.exposition(computed)


def _may_scrape(request: Request, runtime: Runtime, authorization: str | None) -> Problem | None:
    token = runtime.settings.metrics_token
    if token:
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
            return None
        return Problem(
            401,
            "unauthorized",
            "The metrics need the bearer token set in MERCATO_METRICS_TOKEN",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    host = request.client.host if request.client is not None else ""
    proxied = any(h in request.headers for h in ("forwarded", "x-forwarded-for", "x-real-ip"))
    if host in ("127.0.0.1", "::1", "localhost") and not proxied:
        return None
    return Problem(
        403,
        "forbidden",
        "The metrics are served to this host only; set MERCATO_METRICS_TOKEN to scrape from "
        "elsewhere",
    )


# -- the routes --------------------------------------------------------------------------------

router = APIRouter()


@router.get("/api/health", tags=["meta"], response_model=Health)
async def health() -> Health:
    """Liveness: the process answers. Touches nothing else (see ``/api/ready``)."""
    return Health(status="ok")


@router.get("/api/ready", tags=["meta"], response_model=Readiness, responses=problems(503))
async def ready(runtime: RuntimeDep) -> Readiness:
    """Readiness: the database answers at the latest migration and the search index is open;
    503 ``not_ready`` names the failing checks. Redis (when configured) is reported too, but
    the shop sells without it: ``degraded``, still 200."""
    checks = await readiness(runtime)
    if not all(c.ok for c in checks.values() if c.required):
        failing = ", ".join(name for name, c in checks.items() if not c.ok and c.required)
        raise Problem(
            503,
            "not_ready",
            f"Not ready: {failing}",
            title="Not ready",
            headers={"Retry-After": "5"},
            checks={name: c.model_dump() for name, c in checks.items()},
        )
    degraded = not all(c.ok for c in checks.values())
    return Readiness(status="degraded" if degraded else "ready", checks=checks)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(
    request: Request,
    runtime: RuntimeDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Response:
    refusal = _may_scrape(request, runtime, authorization)
    if refusal is not None:
        return problem_response(refusal, request)
    return Response(await scrape(runtime), media_type=metrics.CONTENT_TYPE)
