"""Shared fixtures: private PostgreSQL and Redis, a fresh database per test on each backend,
the app with its lifespan, and an HTTP client over ASGI.

Backends: ``sqlite`` is the embedded default (no Redis); ``postgresql`` is production-shaped
(PostgreSQL plus Redis). Choose with ``--backends=sqlite,postgresql`` (default: both).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from mercato import migrate
from mercato.app import create_app
from mercato.db import Database
from mercato.modules import wire
from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.support.servers import PostgresServer, RedisServer

TEST_PASSWORD = "correct horse battery staple"
# The test clients stand for a browser on the shop's own pages, which sends its Origin with
# every unsafe request (an API call signed in by the cookie needs it; see identity.deps).
BROWSER_HEADERS = {"origin": "http://testserver"}
ALL_BACKENDS = ("sqlite", "postgresql")
_db_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=",".join(ALL_BACKENDS),
        help="comma-separated storage backends to run on: sqlite,postgresql",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long tests (marked ``slow``) first, the rest in their order: the suite's two workers
    take whole files in this order, so the long files do not end up alone at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        chosen = [b.strip() for b in metafunc.config.getoption("--backends").split(",") if b]
        unknown = set(chosen) - set(ALL_BACKENDS)
        if unknown:
            raise pytest.UsageError(f"unknown backends: {sorted(unknown)}")
        metafunc.parametrize("backend", chosen, scope="session")


@pytest.fixture(scope="session", autouse=True)
def wired_modules() -> None:
    """Consumers, jobs, workflows and hooks registered, as in every Mercato process."""
    wire()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sqlite_template() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="mercato-sqlite-"))
    path = directory / "template.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    try:
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_server: PostgresServer) -> str:
    async def create() -> None:
        conn = await asyncpg.connect(pg_server.dsn())
        try:
            await conn.execute("CREATE DATABASE mercato_template")
        finally:
            await conn.close()

    with ThreadPoolExecutor(max_workers=1) as pool:  # the test loop may be running already
        pool.submit(asyncio.run, create()).result()
    migrate.upgrade(pg_server.url("mercato_template"))
    return "mercato_template"


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A freshly migrated, empty database for this test."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "mercato.db"
        shutil.copyfile(template, target)
        return f"sqlite+aiosqlite:///{target}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    template_name: str = request.getfixturevalue("pg_template")
    name = f"t{next(_db_counter)}"
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
    finally:
        await conn.close()
    return server.url(name)


@pytest.fixture
async def redis_url(backend: str, request: pytest.FixtureRequest) -> str | None:
    """Redis on the production-shaped backend (flushed for each test), none on the embedded one."""
    if backend == "sqlite":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    from redis.asyncio import Redis

    client = Redis.from_url(server.url())
    try:
        await client.flushall()
    finally:
        await client.aclose()
    return server.url()


@pytest.fixture
def settings(database_url: str, redis_url: str | None, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key="test-secret-key",
        data_dir=tmp_path / "data",
        db_pool_size=20,
        db_max_overflow=40,
    )


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """A runtime for service-level tests (no HTTP)."""
    rt = Runtime.from_settings(settings)
    try:
        yield rt
    finally:
        await rt.close()


@pytest.fixture
def db(runtime: Runtime) -> Database:
    return runtime.db


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=BROWSER_HEADERS
    ) as c:
        yield c


@pytest.fixture
async def make_client(app: FastAPI) -> AsyncIterator[Callable[[], httpx.AsyncClient]]:
    """Factory of extra clients over the same app (a second device, a second shopper)."""
    clients: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        c = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers=BROWSER_HEADERS,
        )
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()


async def user_headers(app: FastAPI, role: str, email: str) -> dict[str, str]:
    """Create a user with ``role`` through the identity service; bearer headers for it."""
    from mercato.identity import service as identity

    rt: Runtime = app.state.runtime
    async with rt.db.transaction() as uow:
        user = await identity.create_user(
            uow, email=email, password=TEST_PASSWORD, role=role, name=email.split("@")[0]
        )
        token = await identity.issue_token(uow, user.id, rt.settings.token_ttl_seconds)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def staff_headers(app: FastAPI) -> dict[str, str]:
    return await user_headers(app, "staff", "staff@example.com")


@pytest.fixture
async def customer_headers(app: FastAPI) -> dict[str, str]:
    return await user_headers(app, "customer", "customer@example.com")
