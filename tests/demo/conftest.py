"""A second, empty database on the test's backend, for comparing two runs of the generator."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from mercato.runtime import Runtime
from mercato.settings import Settings
from tests.conftest import _db_counter
from tests.support.servers import PostgresServer


@pytest.fixture
async def second_runtime(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, settings: Settings
) -> AsyncIterator[Runtime]:
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "second.db"
        shutil.copyfile(template, target)
        url = f"sqlite+aiosqlite:///{target}"
    else:
        server: PostgresServer = request.getfixturevalue("pg_server")
        name = f"t{next(_db_counter)}"
        conn = await asyncpg.connect(server.dsn())
        try:
            template_name: str = request.getfixturevalue("pg_template")
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
        finally:
            await conn.close()
        url = server.url(name)
    # No shared cart cache between the two shops (Redis keys are not per database).
    runtime = Runtime.from_settings(
        settings.model_copy(update={"database_url": url, "redis_url": None})
    )
    try:
        yield runtime
    finally:
        await runtime.close()
