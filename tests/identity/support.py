"""Helpers shared by the identity tests."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.events import OutboxEvent
from mercato.identity import service
from mercato.identity.models import Token, User
from mercato.runtime import Runtime

PASSWORD = "correct horse battery staple"
# The identity tests' allowances of failed logins: per client IP, per account from one IP, per
# account from anywhere; and of registrations per client IP.
LOGIN_CAPACITY = 5
ACCOUNT_IP_CAPACITY = 3
ACCOUNT_CAPACITY = 8
REGISTER_CAPACITY = 20


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


CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of a page's form."""
    found = CSRF_INPUT.search(html)
    assert found is not None, "the page has no CSRF token"
    return found.group(1)


async def page_post(
    client: httpx.AsyncClient, form_page: str, action: str, data: dict[str, str]
) -> httpx.Response:
    """Submit a page's form as a browser would: load the page (for its CSRF cookie and token),
    then post to ``action``."""
    page = await client.get(form_page)
    assert page.status_code == 200, page.text
    return await client.post(
        action, data={**data, "csrf_token": csrf_of(page.text)}, headers={"accept": "text/html"}
    )


async def make_user(app: FastAPI, email: str, password: str = PASSWORD, name: str = "Ada") -> str:
    """A customer made through the service (no registration limit spent); returns its id."""
    rt: Runtime = app.state.runtime
    async with rt.db.transaction() as uow:
        user = await service.create_user(
            uow, email=email, password=password, role="customer", name=name
        )
    return user.id
