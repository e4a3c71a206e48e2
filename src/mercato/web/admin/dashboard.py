"""Back office: the dashboard at ``/admin``. Today's orders and revenue (per currency, days in
UTC), orders and revenue per day over the last 30 days as SVG bar charts, the products that
sold most in those days, the orders waiting for the warehouse, open returns, the reviews
waiting for moderation and low-stock variants, each linking to the page where staff act on
them."""

from __future__ import annotations

from datetime import date, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mercato.db import utcnow
from mercato.inventory import service as inventory
from mercato.money import exponent
from mercato.orders import service as orders
from mercato.returns import service as returns
from mercato.reviews import service as reviews
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.charts import BarChart, bar_chart
from mercato.web.admin.ops_common import today_range
from mercato.web.deps import PageStaff
from mercato.web.templating import money, render

router = APIRouter()

WAITING_STATUSES: tuple[str, ...] = ("paid", "fulfilling")
OPEN_RETURN_STATUSES: tuple[str, ...] = returns.OPEN
LOW_STOCK_SHOWN = 10
RECENT_ORDERS = 8
CHART_DAYS = 30
TOP_PRODUCTS = 8


def _charts(
    daily: list[orders.DailySales], first: date, currency: str
) -> tuple[BarChart, BarChart]:
    """Orders per day (every currency) and revenue per day (the shop's currency), zero on the
    days without orders."""
    days = [first + timedelta(days=i) for i in range(CHART_DAYS)]
    counts = dict.fromkeys(days, 0)
    revenue = dict.fromkeys(days, 0)
    for row in daily:
        if row.day in counts:
            counts[row.day] += row.orders
            if row.currency == currency:
                revenue[row.day] += row.revenue
    whole = 10 ** exponent(currency)
    orders_chart = bar_chart(
        list(counts.items()),
        describe=lambda d, n: f"{d.isoformat()}: {n} {'order' if n == 1 else 'orders'}",
    )
    revenue_chart = bar_chart(
        list(revenue.items()),
        describe=lambda d, v: f"{d.isoformat()}: {money(v, currency)}",
        axis_label=lambda v: f"{v // whole:,}",
    )
    return orders_chart, revenue_chart


# Served at /admin/ (and /admin redirects there): an included router cannot hold a route with
# an empty path when it is included without a prefix.
@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request, staff: PageStaff, uow: UowDep, runtime: RuntimeDep
) -> HTMLResponse:
    start, end = today_range(utcnow())
    sales = await orders.sales_between(uow, start, end)
    first = start - timedelta(days=CHART_DAYS - 1)
    currency = runtime.settings.currency
    orders_chart, revenue_chart = _charts(
        await orders.daily_sales(uow, first, end), first.date(), currency
    )
    review_counts = await reviews.count_by_state(uow)
    by_status = await orders.count_by_status(uow)
    return_counts = await returns.count_by_status(uow)
    threshold = runtime.settings.low_stock_threshold
    recent = await orders.search_orders(
        uow,
        orders.OrderFilters(),
        secret_key=runtime.settings.secret_key,
        limit=RECENT_ORDERS,
    )
    return render(
        request,
        "admin/dashboard.html",
        {
            "today": start.date(),
            "sales": sales,
            "waiting": {s: by_status.get(s, 0) for s in WAITING_STATUSES},
            "waiting_total": sum(by_status.get(s, 0) for s in WAITING_STATUSES),
            "open_returns": {s: return_counts.get(s, 0) for s in OPEN_RETURN_STATUSES},
            "open_returns_total": sum(return_counts.get(s, 0) for s in OPEN_RETURN_STATUSES),
            "threshold": threshold,
            "low_stock": await inventory.low_stock_variants(uow, threshold, limit=LOW_STOCK_SHOWN),
            "recent": recent.items,
            "chart_from": first.date(),
            "currency": currency,
            "orders_chart": orders_chart,
            "revenue_chart": revenue_chart,
            "top_products": await orders.top_products_between(uow, first, end, limit=TOP_PRODUCTS),
            "review_queue": review_counts.get("pending", 0),
        },
    )
