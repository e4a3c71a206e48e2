"""The app shell: problem+json for unknown routes and methods, health, migrations check."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

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


# --- security headers, the body cap, the API docs -------------------------------------------

SECURITY_HEADERS = ("content-security-policy", "x-frame-options", "x-content-type-options")


async def test_every_answer_carries_the_security_headers(client: httpx.AsyncClient) -> None:
    answers = {
        "page": await client.get("/account/login", headers={"accept": "text/html"}),
        "error page": await client.get("/p/nothing-here", headers={"accept": "text/html"}),
        "api": await client.get("/api/health"),
        "api problem": await client.get("/api/nothing-here"),
        "static": await client.get("/static/css/base.css"),
        "docs": await client.get("/api/docs"),
    }
    for what, r in answers.items():
        csp = r.headers.get("content-security-policy", "")
        for directive in (
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ):
            assert directive in csp, (what, csp)
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, what
        assert r.headers["x-frame-options"] == "DENY", what
        assert r.headers["x-content-type-options"] == "nosniff", what
        assert r.headers["referrer-policy"] == "same-origin", what
        assert "camera=()" in r.headers["permissions-policy"], what
    assert answers["page"].status_code == 200 and answers["error page"].status_code == 404


async def test_api_docs_come_from_the_shop_itself(client: httpx.AsyncClient) -> None:
    import re

    r = await client.get("/api/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert len(assets) >= 3  # Swagger UI's script and stylesheet, and the script that starts it
    for url in assets:
        assert url.startswith("/static/") and "//" not in url, url
        asset = await client.get(url)
        assert asset.status_code == 200, url
        kind = "css" if url.split("?")[0].endswith(".css") else "javascript"
        assert kind in asset.headers["content-type"], url
    assert 'data-openapi-url="/api/openapi.json"' in r.text
    assert "<script>" not in r.text  # no inline script for the CSP to refuse
    assert (await client.get("/api/openapi.json")).status_code == 200
    # FastAPI's CDN-loading page and ReDoc are not served.
    assert (await client.get("/redoc")).status_code == 404
    assert (await client.get("/api/redoc")).status_code == 404


async def test_a_body_over_the_cap_is_refused_before_it_is_read(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    cap = app.state.runtime.settings.max_body_bytes
    assert cap == 1024 * 1024
    big = b'{"email": "' + b"a" * (10 * 1024 * 1024) + b'@example.com", "password": "x"}'

    # Declared up front: answered from the Content-Length alone.
    r = await client.post(
        "/api/auth/login", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "payload_too_large"

    # Streamed without a length: refused once the cap is passed, the rest never read.
    sent = 0
    chunk = 64 * 1024

    async def stream() -> AsyncIterator[bytes]:
        nonlocal sent
        for start in range(0, len(big), chunk):
            sent += chunk
            yield big[start : start + chunk]

    r = await client.post(
        "/api/auth/login", content=stream(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "payload_too_large"
    assert sent <= cap + 2 * chunk
    # A page form is held to the same cap (and answered as an error page).
    r = await client.post(
        "/account/login",
        content=stream(),
        headers={"content-type": "application/x-www-form-urlencoded", "accept": "text/html"},
    )
    assert r.status_code == 413

    # Under the cap, bodies are read as ever.
    r = await client.post("/api/auth/login", json={"email": "a@example.com", "password": "x"})
    assert r.status_code == 401
