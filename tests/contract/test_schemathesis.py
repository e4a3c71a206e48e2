"""The OpenAPI document tells the truth: Schemathesis drives the live app from it.

A small demo shop (the demo's own seeding, indexed) is served by uvicorn on a free port of
127.0.0.1, and Schemathesis runs every phase (explicit examples, the coverage phase's boundary
and negative cases, fuzzing, stateful sequences) as each kind of caller: a guest, a customer, a
seller (with an offer) and a staff member, each on a fresh database. Every check must pass: no
server error, no status code, content type, header or body the document does not describe,
invalid input refused, valid input accepted (``valid_input_accepted`` in ``hooks.py``), methods
the document does not list answered 405 with the right ``Allow``, and operations that need a
token refusing callers without one.

Each caller runs on one backend when both are chosen (the guest and the seller on SQLite, the
customer and staff on PostgreSQL): the document is the API's, not the storage's, and every run
builds a demo shop and walks every operation, which is the suite's most expensive test; both
storage paths still see the fuzzing. With one backend chosen, every caller runs on it.

Bounded and repeatable: a few examples per operation, deterministic generation (no seed
involved, no example database), data made fresh for each run. The logout endpoints are left out
of the token runs (they would revoke the token the run goes on using); the guest run calls them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from rich.console import Console
from sqlalchemy import select

from mercato.app import create_app
from mercato.catalog.models import Variant
from mercato.db import UnitOfWork
from mercato.demo import run_demo
from mercato.identity import service as identity
from mercato.marketplace import service as marketplace
from mercato.runtime import Runtime
from mercato.search import service as search
from mercato.settings import Settings
from tests.conftest import ALL_BACKENDS

pytestmark = pytest.mark.slow  # long: scheduled first (tests/conftest.py)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES_PER_OPERATION = 8
DEMO_PRODUCTS = 12
ROLE_BACKEND = {
    "guest": "sqlite",
    "seller": "sqlite",
    "customer": "postgresql",
    "staff": "postgresql",
}


@dataclass(frozen=True)
class LiveShop:
    url: str
    tokens: dict[str, str]


async def _prepare(settings: Settings) -> dict[str, str]:
    """The demo shop in the database, its search index built, and a token per role."""
    # A short past (orders, reviews) is enough to reach every kind of answer; the demo's default
    # history would cost half a minute per role.
    await run_demo(
        settings,
        Console(quiet=True),
        products=DEMO_PRODUCTS,
        seed=7,
        password="demo-password-1",
        customers=6,
        orders=12,
        serve=False,
    )
    runtime = Runtime.from_settings(settings)
    try:
        await search.reindex(runtime, lambda done, total: None)
        tokens = {}
        async with runtime.db.transaction() as uow:
            for role in ("customer", "staff"):
                user = await identity.create_user(
                    uow,
                    email=f"contract-{role}@example.com",
                    password="contract-password",
                    role=role,
                    name=f"Contract {role}",
                )
                tokens[role] = await identity.issue_token(uow, user.id, 3600)
            tokens["seller"] = await _seller_token(uow)
    finally:
        await runtime.close()
    return tokens


async def _seller_token(uow: UnitOfWork) -> str:
    """An approved seller with an offer on a demo variant, and its account's token."""
    user = await identity.create_user(
        uow,
        email="contract-seller@example.com",
        password="contract-password",
        role="customer",
        name="Contract seller",
    )
    seller = await marketplace.apply(
        uow,
        user.id,
        marketplace.Application(
            name="Contract seller",
            legal_name="Contract Seller GmbH",
            email="contract-seller@example.com",
            country="DE",
            ship_to=("DE", "FR"),
            payout_reference="acct_contract",
        ),
    )
    await marketplace.approve(uow, seller.id)
    sku = await uow.scalar(select(Variant.sku).order_by(Variant.sku).limit(1))
    assert sku is not None
    await marketplace.create_offer(
        uow, seller.id, sku, marketplace.OfferDraft(price="9.99", quantity=5)
    )
    return await identity.issue_token(uow, user.id, 3600)


@pytest.fixture
def one_backend_per_role(role: str, backend: str, request: pytest.FixtureRequest) -> None:
    chosen = [b for b in request.config.getoption("--backends").split(",") if b]
    if set(chosen) >= set(ALL_BACKENDS) and ROLE_BACKEND[role] != backend:
        pytest.skip(f"the {role} run is on {ROLE_BACKEND[role]} when both backends run")


@pytest.fixture
async def live_shop(one_backend_per_role: None, settings: Settings) -> AsyncIterator[LiveShop]:
    tokens = await _prepare(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(settings), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start")
            await asyncio.sleep(0.05)
        yield LiveShop(f"http://127.0.0.1:{port}", tokens)
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        sock.close()


def schemathesis(shop: LiveShop, role: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        f"--config-file={HERE / 'schemathesis.toml'}",
        "run",
        f"{shop.url}/api/openapi.json",
        "--checks=all",
        # Replaced by valid_input_accepted (hooks.py), which knows which 400 and 422 answers are
        # business rules rather than the parser refusing input.
        "--exclude-checks=positive_data_acceptance",
        f"--max-examples={EXAMPLES_PER_OPERATION}",
        "--workers=1",
        "--no-color",
        "--output-truncate=true",
    ]
    # The logout endpoints would revoke the run's token. The back office is the staff run's:
    # it also checks that requests without a token are refused there (ignored_auth); the
    # identity tests check that customers get 403.
    excluded = {
        "guest": "^/api/admin/",
        "customer": "^/api/(admin/|auth/logout)",
        "seller": "^/api/(admin/|auth/logout)",
    }
    if role != "guest":
        command.append(f"--header=Authorization: Bearer {shop.tokens[role]}")
    command.append(f"--exclude-path-regex={excluded.get(role, '^/api/auth/logout')}")
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.contract.hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.mark.parametrize("role", ["guest", "customer", "seller", "staff"])
def test_the_api_does_what_its_document_says(
    live_shop: LiveShop, role: str, tmp_path: Path
) -> None:
    result = schemathesis(live_shop, role, tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20_000:]
    assert "Tested:" in report and " passed" in report, report[-5_000:]  # it really ran
