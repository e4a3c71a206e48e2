"""The FastAPI application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mercato import logs, observability, openapi, problems
from mercato.middleware import BodySizeLimit, ResponseHeaders
from mercato.migrate import ensure_migrated
from mercato.modules import load_models, routers, wire
from mercato.runtime import Runtime
from mercato.settings import Settings, get_settings
from mercato.web.assets import static_app
from mercato.web.security import SECURITY_HEADERS

log = logging.getLogger("mercato")


@asynccontextmanager
async def _embedded_worker(runtime: Runtime) -> AsyncIterator[None]:
    """On the one-process default (``mercato demo``) the API process also runs the worker."""
    if not runtime.settings.embedded_worker:
        yield
        return
    from mercato.worker import run_forever

    stop = asyncio.Event()
    task = asyncio.create_task(run_forever(runtime, stop), name="mercato-worker")
    try:
        yield
    finally:
        stop.set()
        await task


def create_app(settings: Settings | None = None, *, check_migrations: bool = True) -> FastAPI:
    settings = settings or get_settings()
    load_models()
    wire()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.from_settings(settings)
        try:
            if check_migrations:
                await ensure_migrated(runtime.db)
            if (refusal := settings.secret_key_refusal()) is not None:
                log.warning(refusal)  # `mercato serve` and app_factory() refuse to start
            app.state.runtime = runtime
            async with _embedded_worker(runtime):
                yield
        finally:
            await runtime.close()

    app = FastAPI(
        title="Mercato",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # served by the web module from the package's own files
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    problems.install(app)
    openapi.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(ResponseHeaders, headers=SECURITY_HEADERS)  # on every answer
    # Outermost: the request id covers everything below, and the timing too.
    app.add_middleware(observability.RequestObservability)
    app.include_router(observability.router)
    for router in routers():
        app.include_router(router)
    # After the routers: a page route may answer under /static (the demo's generated images).
    app.mount("/static", static_app(), name="static")
    return app


def app_factory() -> FastAPI:
    """Entry point for ``uvicorn --factory mercato.app:app_factory`` (settings from env);
    refuses a secret key anyone could know, outside demo mode."""
    settings = get_settings()
    logs.configure(logs.resolve_format(settings.log_format), settings.log_level)
    if (refusal := settings.secret_key_refusal()) is not None:
        raise RuntimeError(refusal)
    return create_app(settings)
