"""What crosses the cart API: the bodies and answers, and the guest's cart token as it
travels (the ``X-Cart-Token`` header or the ``mercato_cart`` cookie, which the shop's pages
share with the API, so both see one cart)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mercato.cart.service import CART_COOKIE, CART_HEADER
from mercato.openapi import Integer
from mercato.problems import validation_problem
from mercato.settings import Settings
from mercato.text import PlainLine


class AddItemIn(BaseModel):
    """A variant from the house (``variant_id``), or a marketplace seller's offer:
    ``offer_id``, or ``variant_id`` with ``seller_id``."""

    variant_id: (
        Annotated[str, PlainLine(min_length=1, max_length=40), Field(examples=["var_01hx..."])]
        | None
    ) = None
    offer_id: (
        Annotated[
            str,
            PlainLine(min_length=1, max_length=60),
            Field(description="A seller's offer (or house_<variant id>)"),
        ]
        | None
    ) = None
    seller_id: (
        Annotated[
            str,
            PlainLine(min_length=1, max_length=40),
            Field(description="With variant_id: that seller's offer"),
        ]
        | None
    ) = None
    quantity: Integer = Field(default=1, ge=1, strict=True, examples=[1])

    def check_names_offer(self) -> None:
        """422 naming ``variant_id`` when the body names nothing to buy."""
        if self.variant_id is None and self.offer_id is None:
            raise validation_problem("variant_id", "give variant_id (or offer_id)")


class SetQuantityIn(BaseModel):
    quantity: Integer = Field(ge=1, strict=True, examples=[2])


class CartLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    variant_id: str
    seller_id: str | None = Field(
        default=None, description="The seller of the offer the line buys; null: the shop itself"
    )
    seller_name: str | None = None
    product_id: str | None
    sku: str | None
    title: str
    product_title: str
    options: dict[str, str]
    image: str | None
    quantity: int
    currency: str
    unit_price: str = Field(description="Current price per unit, decimal string")
    unit_price_seen: str = Field(description="Price per unit when the line was added")
    price_changed: bool
    line_total: str
    stock_status: Literal["in_stock", "short", "out_of_stock", "not_deliverable"] = Field(
        description="For delivery to the cart's `country`: `not_deliverable` when only "
        "warehouses shipping elsewhere have the item"
    )
    available: int | None = Field(
        description="Units available for delivery to the cart's country, when short, out of "
        "stock or not deliverable"
    )
    available_hint: str | None = Field(description='Low-stock hint such as "Only 3 left"')
    purchasable: bool
    added_at: datetime


class CartOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str | None
    cart_token: str | None = Field(
        default=None,
        description="Guests: send it back as the X-Cart-Token header (browsers get a cookie)",
    )
    currency: str | None
    lines: list[CartLineOut]
    item_count: int
    line_count: int
    subtotal: str
    notices: list[str]
    country: str | None = Field(
        default=None, description="The destination the lines' stock is judged for"
    )


# --------------------------------------------------------------------------------------------
# The guest's token


def presented_token(request: Request) -> tuple[str | None, bool]:
    """The guest token from the ``X-Cart-Token`` header, else the cookie; (token, from_cookie)."""
    header = request.headers.get(CART_HEADER)
    if header:
        return header, False
    cookie = request.cookies.get(CART_COOKIE)
    return (cookie, True) if cookie else (None, False)


def set_cart_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        CART_COOKIE,
        token,
        max_age=settings.guest_cart_ttl_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def clear_cart_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        CART_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure
    )


def cookie_clearing_header(settings: Settings) -> str:
    """The ``Set-Cookie`` value that clears the cookie (for a problem answer)."""
    scratch = Response()
    clear_cart_cookie(scratch, settings)
    return scratch.headers["set-cookie"]
