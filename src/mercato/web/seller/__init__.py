"""The seller portal under ``/seller``: a ``seller`` account's own seller only, enforced on
every route by the router's dependency (a signed-out visitor is sent to the login form, any
other account gets 403). The menu is one list, in ``templates/seller/base.html``; the orders to
ship and the returns join it as ``/seller/orders`` and ``/seller/returns``."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from mercato.web.deps import seller_user
from mercato.web.seller import dashboard, offers, orders, returns, statements, stock

router = APIRouter(prefix="/seller", dependencies=[Depends(seller_user)])
# /seller itself: an included router cannot hold an empty path, the prefixed one can.
router.add_api_route("", dashboard.dashboard, methods=["GET"], response_class=HTMLResponse)
for part in (dashboard, offers, orders, stock, statements, returns):
    router.include_router(part.router)
