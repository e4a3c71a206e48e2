"""The dashboard with a past: after the demo's history generator, the back office's charts of
orders and revenue per day are drawn (one bar a day, their figures those of the orders
service), the top products and the review queue are shown, and the page keeps the CSP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, expect

from mercato.db import utcnow
from mercato.demo_history import generate_history
from mercato.orders import service as orders
from mercato.reviews import service as reviews
from mercato.runtime import Runtime
from tests.conftest import TEST_PASSWORD
from tests.web.admin_helpers import browser_login
from tests.web.conftest import STAFF_EMAIL, screenshot
from tests.web.test_csp import Watch, _context

pytestmark = pytest.mark.slow  # long: scheduled first (tests/conftest.py)


async def test_the_dashboard_draws_the_history(
    browser: Browser, live_server: str, shop: Runtime
) -> None:
    counts = await generate_history(
        shop, customers=25, orders_count=160, seed=4, password=TEST_PASSWORD
    )
    assert counts.orders > 100
    end = datetime.combine(utcnow().date() + timedelta(days=1), datetime.min.time(), UTC)
    async with shop.db.transaction() as uow:
        daily = await orders.daily_sales(uow, end - timedelta(days=30), end)
        top = await orders.top_products_between(uow, end - timedelta(days=30), end, limit=8)
        queue = (await reviews.count_by_state(uow)).get("pending", 0)
    per_day = {d.day.isoformat(): d.orders for d in daily}

    watch = Watch()
    context = await _context(browser, live_server, watch)
    try:
        await browser_login(context, STAFF_EMAIL)
        page = await context.new_page()
        await watch.visit(page, "/admin/")
        chart = page.get_by_test_id("chart-orders")
        await expect(chart).to_be_visible()
        bars = chart.locator("rect.chart-bar")
        await expect(bars).to_have_count(30)
        drawn = {
            await bar.get_attribute("data-day"): int(await bar.get_attribute("data-value") or 0)
            for bar in await bars.all()
        }
        assert {day: n for day, n in drawn.items() if n} == per_day
        heights = [float(await bar.get_attribute("height") or 0) for bar in await bars.all()]
        assert max(heights) > 0 and sum(1 for h in heights if h > 0) == len(per_day)
        # The chart is really painted: a box on screen.
        box = await chart.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 80
        await expect(page.get_by_test_id("chart-revenue").locator("rect.chart-bar")).to_have_count(
            30
        )
        rows = page.get_by_test_id("top-products").locator("tbody tr")
        await expect(rows).to_have_count(len(top))
        await expect(rows.first).to_contain_text(top[0].title)
        await expect(page.get_by_test_id("review-queue").locator(".figure")).to_have_text(
            str(queue)
        )
        await screenshot(page, "admin-dashboard-history")
    finally:
        await context.close()
    assert watch.violations == [], watch.violations
    assert watch.errors == [], watch.errors
