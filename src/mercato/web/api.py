"""The pages' router: the storefront and account pages (``mercato.web.shop``), the back
office (``mercato.web.admin``) and the seller portal (``mercato.web.seller``). Static files are
mounted by the app factory (:func:`mercato.web.assets.static_app`). Loading this module makes
errors on pages render as HTML (see :func:`mercato.problems.set_page_renderer`)."""

from __future__ import annotations

from fastapi import APIRouter

from mercato import problems
from mercato.web import admin, apidocs, seller, shop
from mercato.web.templating import render_problem

router = APIRouter(include_in_schema=False)
router.include_router(shop.router)
router.include_router(admin.router)
router.include_router(seller.router)
router.include_router(apidocs.router)

problems.set_page_renderer(render_problem)
