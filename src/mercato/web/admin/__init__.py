"""The back office under ``/admin``: staff only, enforced on every route by the router's
dependency (a signed-out visitor is sent to the login form, a customer gets 403)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from mercato.web.admin import (
    catalog,
    commissions,
    dashboard,
    flashsales,
    integrations,
    inventory,
    ledger,
    orders,
    promos,
    returns,
    reviews,
    sellers,
    settings,
)
from mercato.web.deps import staff_user

router = APIRouter(prefix="/admin", dependencies=[Depends(staff_user)])
# /admin itself (the dashboard also answers /admin/): an included router cannot hold an empty
# path, the prefixed one can.
router.add_api_route("", dashboard.dashboard, methods=["GET"], response_class=HTMLResponse)
for part in (
    dashboard,
    orders,
    returns,
    reviews,
    inventory,
    catalog,
    promos,
    flashsales,
    sellers,
    commissions,
    ledger,
    settings,
    integrations,
):
    router.include_router(part.router)
