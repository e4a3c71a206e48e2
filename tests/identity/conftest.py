"""Identity test fixtures: a cheap argon2 cost, small and slow allowances, a real SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI

from mercato.identity import service
from mercato.settings import Settings
from tests.identity.support import (
    ACCOUNT_CAPACITY,
    ACCOUNT_IP_CAPACITY,
    LOGIN_CAPACITY,
    REGISTER_CAPACITY,
)
from tests.support.smtp import SmtpServer, running_smtp_server

# Real argon2id, with the smallest cost it allows: the tests check behaviour, not hash strength.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SLOW = 1 / 3600  # one token an hour: no test can see a bucket refill while it runs


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> PasswordHasher:
    monkeypatch.setattr(service, "PASSWORD_HASHER", FAST_HASHER)
    return FAST_HASHER


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "login_rate_capacity": LOGIN_CAPACITY,
            "login_rate_refill_per_second": SLOW,
            "login_account_ip_capacity": ACCOUNT_IP_CAPACITY,
            "login_account_ip_refill_per_second": SLOW,
            "login_account_capacity": ACCOUNT_CAPACITY,
            "login_account_refill_per_second": SLOW,
            "register_per_ip_per_hour": REGISTER_CAPACITY,
        }
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
