"""What the storefront pages share: whose cart a browser holds (the same ``mercato_cart`` cookie
as the cart API, so pages and API see one cart), the signed-in shopper looked up in a short
transaction of its own, form reading, and prices given as decimal strings."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from mercato.cart import schemas as cart_schemas
from mercato.cart import service as cart_service
from mercato.cart.service import CART_COOKIE, CartOwner
from mercato.identity import service as identity
from mercato.identity.service import UserInfo
from mercato.money import MoneyError, to_minor
from mercato.problems import Problem
from mercato.settings import Settings
from mercato.web.deps import page_user, signed_in_user


def country_name(code: str) -> str:
    return identity.country_name(code.upper())


def form_errors(exc: ValidationError) -> dict[str, str]:
    """A page form's validation failures as one message per field, in the shopper's words."""
    errors: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = loc[-1] if loc else "form"
        message = str(err.get("msg", "invalid"))
        if err.get("type") == "missing" or "at least 1 character" in message:
            message = "This field is required."
        elif name == "country":
            message = "Choose a country."
        elif name == "region":
            message = "Letters, digits and hyphens only (e.g. CA or BY)."
        elif name == "payment_token":
            message = "Choose a card."
        errors.setdefault(name, message)
    return errors


def served_countries(request: Request) -> list[str]:
    """The countries a shopper may pick on the pages (those the shop serves), as the shop's
    routers' ``page_destination`` dependency read them for this request's header."""
    return list(getattr(request.state, "deliver_to_choices", None) or ())


def minor_of(amount: str, currency: str) -> int | None:
    try:
        return to_minor(amount, currency)
    except MoneyError:
        return None


# --------------------------------------------------------------------------------------------
# Who is asking


# The shop's pages read the user in a short transaction of their own (see web.deps).
brief_user = page_user
brief_signed_in = signed_in_user

BriefUser = Annotated[UserInfo | None, Depends(brief_user)]
BriefSignedIn = Annotated[UserInfo, Depends(brief_signed_in)]


# --------------------------------------------------------------------------------------------
# The cart cookie


def cart_owner(request: Request, user: UserInfo | None, settings: Settings) -> CartOwner:
    """A signed-in customer's cart, else the guest cart the cookie names (none when the
    cookie is missing or forged: browsing never fails on a bad cookie)."""
    if user is not None:
        return CartOwner(user_id=user.id)
    token = request.cookies.get(CART_COOKIE)
    if not token:
        return CartOwner()
    try:
        return CartOwner(guest_cart_id=cart_service.read_cart_token(settings.secret_key, token))
    except Problem:
        return CartOwner()


def set_cart_cookie(response: Response, settings: Settings, cart_id: str) -> None:
    token = cart_service.sign_cart_token(settings.secret_key, cart_id)
    cart_schemas.set_cart_cookie(response, settings, token)


clear_cart_cookie = cart_schemas.clear_cart_cookie


# --------------------------------------------------------------------------------------------
# Forms


async def form_of(request: Request) -> FormData:
    """The posted form (already parsed, and cached, by the CSRF check)."""
    return await request.form()


def text_field(form: FormData, name: str, max_length: int = 500) -> str:
    value = form.get(name)
    if not isinstance(value, str):
        return ""
    return value.strip()[:max_length]


def int_field(form: FormData, name: str, default: int | None = None) -> int | None:
    raw = text_field(form, name, 12)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        return None
