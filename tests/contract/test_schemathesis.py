"""The OpenAPI document tells the truth: Schemathesis drives the live app from it.

A small demo shop (the demo's own seeding, indexed) is served by uvicorn on a free port of
127.0.0.1, and Schemathesis runs every phase (explicit examples, the coverage phase's boundary
and negative cases, fuzzing, stateful sequences) as each kind of caller: a guest, a customer
and a staff member, each on a fresh database. Every check must pass: no server error, no status
code, content type, header or body the document does not describe, invalid input refused, valid
input accepted (``valid_input_accepted`` in ``hooks.py``), methods the document does not list
answered 405 with the right ``Allow``, and operations that need a token refusing callers
without one.

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

from mercato.app import create_app
from mercato.demo import run_demo
from mercato.identity import service as identity
from mercato.runtime import Runtime
from mercato.search import service as search
from mercato.settings import Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
EXAMPLES_PER_OPERATION = 8
DEMO_PRODUCTS = 12


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
    finally:
        await runtime.close()
    return tokens


@pytest.fixture
async def live_shop(settings: Settings) -> AsyncIterator[LiveShop]:
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
    excluded = {"guest": "^/api/admin/", "customer": "^/api/(admin/|auth/logout)"}
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


@pytest.mark.parametrize("role", ["guest", "customer", "staff"])
def test_the_api_does_what_its_document_says(
    live_shop: LiveShop, role: str, tmp_path: Path
) -> None:
    result = schemathesis(live_shop, role, tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20_000:]
    assert "Tested:" in report and " passed" in report, report[-5_000:]  # it really ran
