"""Back office: the dashboard at ``/admin``. Today's orders and revenue (per currency, days in
UTC), the orders waiting for the warehouse, open returns and low-stock variants, each linking
to the page where staff act on them."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from mercato.db import utcnow
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.returns import service as returns
from mercato.runtime import RuntimeDep, UowDep
from mercato.web.admin.ops_common import today_range
from mercato.web.deps import PageStaff
from mercato.web.templating import render

router = APIRouter()

WAITING_STATUSES: tuple[str, ...] = ("paid", "fulfilling")
OPEN_RETURN_STATUSES: tuple[str, ...] = returns.OPEN
LOW_STOCK_SHOWN = 10
RECENT_ORDERS = 8


# Served at /admin/ (and /admin redirects there): an included router cannot hold a route with
# an empty path when it is included without a prefix.
@router.get("/", response_class=HTMLResponse)
async def dashboard(
    request: Request, staff: PageStaff, uow: UowDep, runtime: RuntimeDep
) -> HTMLResponse:
    start, end = today_range(utcnow())
    sales = await orders.sales_between(uow, start, end)
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
        },
    )
