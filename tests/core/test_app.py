"""The app shell: problem+json for unknown routes and methods, health, migrations check."""

from __future__ import annotations

import httpx
import pytest

from mercato.app import create_app
from mercato.migrate import NotMigrated
from mercato.settings import Settings


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_unknown_route_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/nothing-here")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["code"] == "not_found"
    assert body["status"] == 404
    assert body["type"].startswith("https://")
    assert "Traceback" not in r.text


async def test_wrong_method_is_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.delete("/api/health")
    assert r.status_code == 405
    assert r.json()["code"] == "method_not_allowed"


async def test_refuses_unmigrated_database(tmp_path: object, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("one backend is enough to show the refusal")
    settings = Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    app = create_app(settings)
    with pytest.raises(NotMigrated, match="mercato migrate"):
        async with app.router.lifespan_context(app):
            pass
