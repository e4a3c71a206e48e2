"""Helpers shared by the identity tests."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.events import OutboxEvent
from mercato.identity.models import Token, User
from mercato.runtime import Runtime

PASSWORD = "correct horse battery staple"
LOGIN_CAPACITY = 5  # the identity tests' login allowance per IP and per account


@dataclass(frozen=True)
class Counts:
    users: int
    tokens: int
    events: int


async def counts(app: FastAPI) -> Counts:
    """How many rows identity (and the outbox) hold: bad input must not change these."""
    rt: Runtime = app.state.runtime
    async with rt.db.transaction() as session:
        users = await session.scalar(select(func.count()).select_from(User))
        tokens = await session.scalar(select(func.count()).select_from(Token))
        events = await session.scalar(select(func.count()).select_from(OutboxEvent))
    return Counts(users or 0, tokens or 0, events or 0)


async def register(
    client: httpx.AsyncClient,
    email: str = "ada@example.com",
    password: str = PASSWORD,
    name: str = "Ada",
) -> httpx.Response:
    r = await client.post(
        "/api/auth/register", json={"email": email, "password": password, "name": name}
    )
    assert r.status_code == 201, r.text
    return r


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = r.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


def plant_session_cookie(client: httpx.AsyncClient, token: str) -> None:
    """Put a session cookie in the jar as if the server had set it (same domain, so a later
    Set-Cookie from the server replaces or deletes it)."""
    client.cookies.set("mercato_session", token, domain="testserver.local", path="/")
