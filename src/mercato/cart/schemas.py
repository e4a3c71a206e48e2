"""What crosses the cart API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class AddItemIn(BaseModel):
    variant_id: str = Field(min_length=1, max_length=40, examples=["var_01hx..."])
    quantity: int = Field(default=1, ge=1, strict=True, examples=[1])


class SetQuantityIn(BaseModel):
    quantity: int = Field(ge=1, strict=True, examples=[2])


class CartLineOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    variant_id: str
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
    stock_status: Literal["in_stock", "short", "out_of_stock"]
    available: int | None = Field(description="Units available, when short or out of stock")
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
