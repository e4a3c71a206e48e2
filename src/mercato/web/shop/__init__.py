"""Storefront and account pages: browsing and search (``pages``), a customer's reviews
(``reviews``), the cart (``cart``), checkout (``checkout``), the shopper's account
(``account``), a guest's order by its link or a lookup (``guest_orders``) and the demo's
placeholder pictures (``images``). They call the same services
as the JSON API; no commerce rule lives here."""

from __future__ import annotations

from fastapi import APIRouter

from mercato.web.shop import account, cart, checkout, guest_orders, images, pages, reviews

router = APIRouter()
for part in (images, pages, reviews, cart, checkout, account, guest_orders):
    router.include_router(part.router)
