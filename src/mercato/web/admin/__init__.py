"""The back office under ``/admin``: staff only, enforced on every route by the router's
dependency (a signed-out visitor is sent to the login form, a customer gets 403)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from mercato.web.admin import (
    catalog,
    dashboard,
    integrations,
    inventory,
    orders,
    promos,
    returns,
    settings,
)
from mercato.web.deps import staff_user

router = APIRouter(prefix="/admin", dependencies=[Depends(staff_user)])
for part in (dashboard, orders, returns, inventory, catalog, promos, settings, integrations):
    router.include_router(part.router)
