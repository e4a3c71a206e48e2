"""The page shell: HTML error pages for browsers, problem+json for scripts, cached assets, CSRF."""

from __future__ import annotations

import httpx
from playwright.async_api import Page

from tests.web.conftest import screenshot


async def test_unknown_page_is_an_html_error_in_the_browser(page: Page) -> None:
    response = await page.goto("/no-such-page")
    assert response is not None and response.status == 404
    assert await page.locator("h1").inner_text() == "Not found"
    assert "not_found" in await page.locator("main").inner_text()
    await screenshot(page, "error-404")


async def test_scripts_asking_a_page_url_still_get_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/no-such-page")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "not_found"


async def test_versioned_assets_are_cached_for_a_year(client: httpx.AsyncClient) -> None:
    r = await client.get("/static/css/base.css?v=abc")
    assert r.status_code == 200
    assert "immutable" in r.headers["cache-control"]
    r = await client.get("/static/css/base.css")
    assert "must-revalidate" in r.headers["cache-control"]
    assert (await client.get("/static/../settings.py")).status_code == 404
