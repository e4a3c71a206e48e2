"""The command line: the demo shop from nothing, and the refusal to serve an unmigrated database."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from mercato.app import create_app
from mercato.cli import app as cli
from mercato.settings import Settings, get_settings

A_SECRET = "a-long-random-secret-key-for-the-cli-tests-only"


def _invoke(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str]:
    get_settings.cache_clear()  # the settings come from the environment given here
    try:
        result = CliRunner().invoke(cli, list(args), env=env)
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


async def test_demo_seeds_a_shop_that_answers(tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the demo's embedded default is SQLite")
    database = tmp_path / "demo.db"
    code, output = await asyncio.to_thread(
        _invoke,
        "demo",
        "--no-serve",
        "--products",
        "40",
        "--orders",
        "20",
        "--customers",
        "5",
        "--database",
        str(database),
    )
    assert code == 0, output
    assert "staff@example.com" in output and "shopper@example.com" in output
    assert "History: 5 customers, 20 orders" in output
    # A second run keeps what is there.
    code, output = await asyncio.to_thread(
        _invoke, "demo", "--no-serve", "--products", "40", "--database", str(database)
    )
    assert code == 0 and "already present" in output

    settings = Settings(database_url=f"sqlite+aiosqlite:///{database}", data_dir=tmp_path / "d")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
            products = (await client.get("/api/products", params={"limit": 5})).json()["items"]
            assert len(products) == 5
            for product in products:
                assert product["variants"]
                for variant in product["variants"]:
                    assert re.fullmatch(r"\d+\.\d{2}", variant["price"])
            login = await client.post(
                "/api/auth/login",
                json={"email": "shopper@example.com", "password": "demo-password"},
            )
            assert login.status_code == 200
            methods = await client.get("/api/checkout/shipping-methods", params={"country": "DE"})
            codes = {m["code"] for m in methods.json()["methods"]}
            assert {"standard", "express"} <= codes


async def test_serve_refuses_an_unmigrated_database(tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("one backend is enough to show the refusal")
    code, output = await asyncio.to_thread(
        _invoke,
        "serve",
        "--database",
        str(tmp_path / "empty.db"),
        "--port",
        "1",
        env={"MERCATO_SECRET_KEY": A_SECRET},
    )
    assert code == 1
    assert "mercato migrate" in output


@pytest.mark.parametrize("command", ["serve", "worker"])
@pytest.mark.parametrize("secret", [None, "short"])
def test_serve_and_worker_refuse_a_public_or_short_secret_key(
    tmp_path: Path, backend: str, command: str, secret: str | None
) -> None:
    if backend != "sqlite":
        pytest.skip("a refusal before any database is touched")
    # No MERCATO_SECRET_KEY (the public default), or one too short to be random enough.
    env = {"MERCATO_SECRET_KEY": secret, "MERCATO_DEMO_MODE": None}
    code, output = _invoke(command, "--database", str(tmp_path / "m.db"), env=env)
    assert code == 2, output
    assert "MERCATO_SECRET_KEY" in output
    assert not (tmp_path / "m.db").exists()  # refused before touching the database


def test_app_factory_refuses_the_public_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from mercato.app import app_factory

    monkeypatch.delenv("MERCATO_SECRET_KEY", raising=False)
    monkeypatch.delenv("MERCATO_DEMO_MODE", raising=False)
    get_settings.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="MERCATO_SECRET_KEY"):
            app_factory()
        monkeypatch.setenv("MERCATO_DEMO_MODE", "true")  # the demo shop may keep it
        get_settings.cache_clear()
        assert app_factory().title == "Mercato"
    finally:
        get_settings.cache_clear()


async def test_migrate_then_serve_check_passes(tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("migrations on PostgreSQL run for every test already")
    code, output = await asyncio.to_thread(_invoke, "migrate", "--database", str(tmp_path / "m.db"))
    assert code == 0, output
    assert "revision" in output


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_demo_answers_search_as_soon_as_it_prints_its_address(tmp_path: Path, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("the demo's embedded default is SQLite")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MERCATO_")}
    env["PYTHONUNBUFFERED"] = "1"
    command = [sys.executable, "-m", "mercato.cli", "demo", "--port", str(port)]
    command += ["--products", "30", "--orders", "10", "--customers", "4"]
    command += ["--database", str(tmp_path / "shop.db")]
    demo = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watchdog = threading.Timer(120, demo.kill)  # a hung start fails the test, not the suite
    watchdog.start()
    seen: list[str] = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            seen.append(line)
            if "Mercato demo shop:" in line:
                break
        else:
            pytest.fail("the demo stopped before printing its address:\n" + "".join(seen))
        # At once: no waiting, no retry.
        answer = httpx.get(f"http://127.0.0.1:{port}/api/search")
        assert answer.status_code == 200, answer.text
        assert answer.json()["total"] > 0
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
        watchdog.cancel()
    assert demo.returncode == 0, "".join(seen) + rest
    assert (tmp_path / "shop-data" / "search").is_dir()  # beside the database
