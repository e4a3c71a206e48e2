"""Storefront and account pages: browsing and search (``pages``), a customer's reviews
(``reviews``), the cart (``cart``), checkout (``checkout``), the shopper's account
(``account``), the wishlist (``wishlist``), a guest's order by its link or a lookup
(``guest_orders``), flash sales (``flashsale``) and their checkout (``flash_checkout``), who
sells a product and a seller's page (``sellers``) and the demo's placeholder pictures
(``images``). They call the same services as the JSON API; no commerce rule lives here."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from mercato.web.deps import page_destination
from mercato.web.shop import (
    account,
    cart,
    checkout,
    flash_checkout,
    flashsale,
    guest_orders,
    images,
    pages,
    reviews,
    sellers,
    wishlist,
)

router = APIRouter()
router.include_router(images.router)
router.include_router(flashsale.panel_router)
router.include_router(flash_checkout.status_router)
# Every page's header says where the shopper's goods would go, and offers to change it.
for part in (
    pages,
    sellers,
    reviews,
    cart,
    checkout,
    account,
    guest_orders,
    wishlist,
    flashsale,
    flash_checkout,
):
    router.include_router(part.router, dependencies=[Depends(page_destination)])
