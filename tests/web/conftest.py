"""Web page tests: the app served for real over HTTP on 127.0.0.1 (uvicorn on a free port, in
the test's event loop) and a real headless Chromium driven by Playwright.

Chromium is Debian's (``/usr/bin/chromium``, or ``MERCATO_CHROMIUM``); the README's test command
installs it. Screenshots go to ``test-artifacts/screenshots`` (not committed)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from mercato import worker
from mercato.catalog.demo import seed_catalog
from mercato.checkout.demo import seed_checkout
from mercato.identity import service as identity
from mercato.inventory.demo import seed_inventory
from mercato.runtime import Runtime
from mercato.search import service as search
from mercato.settings import Settings
from tests.conftest import TEST_PASSWORD

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("MERCATO_ARTIFACTS", ROOT / "test-artifacts")) / "screenshots"
CHROMIUM = os.environ.get("MERCATO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]
STAFF_EMAIL = "staff@example.com"
SHOPPER_EMAIL = "shopper@example.com"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Demo mode: ratings and sales figures on the generated products, as `mercato demo` has.
    return settings.model_copy(update={"demo_mode": True})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def live_server(app: FastAPI) -> AsyncIterator[str]:
    """The app (lifespan already running) served over real HTTP; yields its base URL."""
    port = _free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    else:
        raise RuntimeError("the test server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):  # noqa: ASYNC240  (once per session)
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run the README's test command")
    async with async_playwright() as p:
        chromium = await p.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def context(browser: Browser, live_server: str) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(base_url=live_server, viewport={"width": 1280, "height": 900})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot for a person to look at (a test artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def runtime_of(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


async def sync(app: FastAPI) -> None:
    """One worker pass: outbox delivered (search index, notifications...)."""
    await worker.run_once(runtime_of(app))


@pytest.fixture
async def shop(app: FastAPI) -> Runtime:
    """A small demo shop: generated catalog with stock, shipping/tax/promo setup, a built
    search index, a staff user and a customer (password ``TEST_PASSWORD``)."""
    runtime = runtime_of(app)
    currency = runtime.settings.currency
    variant_ids = await seed_catalog(runtime.db, products=120, seed=7, currency=currency)
    await seed_inventory(runtime.db, variant_ids, seed=7)
    await seed_checkout(runtime.db, currency=currency)
    async with runtime.db.transaction() as uow:
        for email, role in ((STAFF_EMAIL, "staff"), (SHOPPER_EMAIL, "customer")):
            await identity.create_user(
                uow, email=email, password=TEST_PASSWORD, role=role, name=email.split("@")[0]
            )
    await search.reindex(runtime)
    await sync(app)
    return runtime
