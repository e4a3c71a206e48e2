"""Identity test fixtures: a cheap argon2 cost and a small, slow login allowance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from mercato.identity import service
from mercato.settings import Settings
from tests.identity.support import LOGIN_CAPACITY

# Real argon2id, with the smallest cost it allows: the tests check behaviour, not hash strength.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> PasswordHasher:
    monkeypatch.setattr(service, "PASSWORD_HASHER", FAST_HASHER)
    return FAST_HASHER


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # A refill of one attempt per hour: no test can see a bucket refill while it runs.
    return settings.model_copy(
        update={"login_rate_capacity": LOGIN_CAPACITY, "login_rate_refill_per_second": 1 / 3600}
    )


@pytest.fixture
async def client_from(app: FastAPI) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    """Factory of clients that appear to come from a given IP address."""
    clients: list[httpx.AsyncClient] = []

    def factory(ip: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(ip, 40000))
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        clients.append(c)
        return c

    yield factory
    for c in clients:
        await c.aclose()
