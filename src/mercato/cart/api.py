"""The cart API: the caller's cart (a customer's, or a guest's from the signed token)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from mercato.cart import service
from mercato.cart.schemas import (
    AddItemIn,
    CartOut,
    SetQuantityIn,
    clear_cart_cookie,
    cookie_clearing_header,
    presented_token,
    set_cart_cookie,
)
from mercato.cart.service import CartLimits, CartOwner, Edit
from mercato.db import UnitOfWork
from mercato.identity.deps import ApiDestination, OptionalUser
from mercato.identity.service import Destination, UserInfo
from mercato.openapi import problems, raises
from mercato.problems import Problem
from mercato.ratelimit import client_ip
from mercato.runtime import Runtime, RuntimeDep, UowDep
from mercato.settings import Settings

router = APIRouter(prefix="/api/cart", tags=["cart"])


@dataclass(frozen=True, slots=True)
class Caller:
    owner: CartOwner
    ip: str
    token_from_cookie: bool = False


@contextmanager
def _stale_cookie_cleared(caller: Caller, settings: Settings) -> Iterator[None]:
    """A cookie naming a cart that is gone is cleared with the 400, so the browser recovers."""
    try:
        yield
    except Problem as exc:
        if exc.code == "invalid_cart_token" and caller.token_from_cookie:
            exc.headers = {**(exc.headers or {}), "set-cookie": cookie_clearing_header(settings)}
        raise


@raises(400)  # invalid_cart_token
async def get_caller(request: Request, runtime: RuntimeDep, user: OptionalUser) -> Caller:
    """Signed-in customers use their own cart (a guest token is then ignored); guests the cart
    their token names. A forged token is a 400 ``invalid_cart_token``."""
    ip = client_ip(request)
    if user is not None:
        return Caller(CartOwner(user_id=user.id), ip)
    token, from_cookie = presented_token(request)
    if token is None:
        return Caller(CartOwner(), ip)
    caller = Caller(CartOwner(), ip, token_from_cookie=from_cookie)
    with _stale_cookie_cleared(caller, runtime.settings):
        cart_id = service.read_cart_token(runtime.settings.secret_key, token)
    return Caller(CartOwner(guest_cart_id=cart_id), ip, token_from_cookie=from_cookie)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def _answer(
    uow: UnitOfWork,
    runtime: Runtime,
    cart: service.CartInfo | None,
    destination: Destination,
    response: Response | None = None,
    change: service.CartChange | None = None,
) -> CartOut:
    view = await service.view_cart(
        uow,
        cart,
        shop_currency=runtime.settings.currency,
        low_stock_threshold=runtime.settings.low_stock_threshold,
        known_variants=change.variants if change is not None else None,
        known_stock=change.stock if change is not None else None,
        country=destination.country,
    )
    out = CartOut.model_validate(view)
    if cart is not None and cart.is_guest:
        out.cart_token = service.sign_cart_token(runtime.settings.secret_key, cart.id)
        if response is not None:
            set_cart_cookie(response, runtime.settings, out.cart_token)
    return out


async def _edit(
    uow: UnitOfWork,
    runtime: Runtime,
    caller: Caller,
    destination: Destination,
    response: Response,
    edit: Edit,
) -> CartOut:
    """Every change to the caller's cart (a guest's counted against its IP first): made by the
    service, then answered with the cart as the change handed it over (else read again by
    id)."""
    guard = service.GuestThrottle.for_caller(runtime, caller.ip)
    await service.throttle_guest(guard, caller.owner, edit)
    with _stale_cookie_cleared(caller, runtime.settings):
        change = await service.edit_cart(
            uow,
            caller.owner,
            edit,
            limits=CartLimits.from_settings(runtime.settings),
            cache=service.cache_for(runtime),
        )
    if change is not None and change.cart is not None:
        return await _answer(uow, runtime, change.cart, destination, response, change)
    cart = await service.get_cart(uow, change.cart_id) if change is not None else None
    return await _answer(uow, runtime, cart, destination, response)


@router.get("", response_model=CartOut)
async def show_cart(
    uow: UowDep, runtime: RuntimeDep, caller: CallerDep, destination: ApiDestination
) -> CartOut:
    """The caller's cart with current prices, price-change and stock flags, and totals. Stock
    is judged for the destination (``?country=``, else the customer's default address, else
    the shop's country): lines only warehouses shipping elsewhere hold are
    ``not_deliverable``."""
    with _stale_cookie_cleared(caller, runtime.settings):
        cart = await service.load_cart(uow, caller.owner, cache=service.cache_for(runtime))
    return await _answer(uow, runtime, cart, destination)


@router.post(
    "/items",
    response_model=CartOut,
    status_code=status.HTTP_201_CREATED,
    responses=problems(404, 409, 429),
)
async def add_item(
    body: AddItemIn,
    uow: UowDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    destination: ApiDestination,
    response: Response,
) -> CartOut:
    """Add a variant, or a marketplace seller's offer (``offer_id``, or ``variant_id`` with
    ``seller_id``: 404 for no such offer, 409 ``offer_unavailable`` when it cannot be bought
    now). A guest's first add creates the cart and returns its ``cart_token``."""
    body.check_names_offer()
    edit = Edit.add(
        body.variant_id or "",
        body.quantity,
        seller_id=body.seller_id,
        offer_id=body.offer_id,
        country=destination.country,
    )
    return await _edit(uow, runtime, caller, destination, response, edit)


@router.patch("/items/{line_id}", response_model=CartOut, responses=problems(409, 429))
async def set_quantity(
    line_id: str,
    body: SetQuantityIn,
    uow: UowDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    destination: ApiDestination,
    response: Response,
) -> CartOut:
    edit = Edit.set_quantity(line_id, body.quantity)
    return await _edit(uow, runtime, caller, destination, response, edit)


@router.delete("/items/{line_id}", response_model=CartOut, responses=problems(429))
async def remove_item(
    line_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    destination: ApiDestination,
    response: Response,
) -> CartOut:
    return await _edit(uow, runtime, caller, destination, response, Edit.remove(line_id))


@router.delete("", response_model=CartOut, responses=problems(429))
async def empty_cart(
    uow: UowDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    destination: ApiDestination,
    response: Response,
) -> CartOut:
    """Remove every line; the (now empty) cart is returned."""
    return await _edit(uow, runtime, caller, destination, response, Edit.empty())


async def merge_guest_cart_on_login(
    uow: UnitOfWork, request: Request, response: Response, user: UserInfo
) -> None:
    """Login hook: the guest cart the request carries joins the customer's cart, then is gone.

    A missing, forged or stale token never fails a login: there is simply nothing to merge."""
    token, _ = presented_token(request)
    if token is None:
        return
    runtime: Runtime = request.app.state.runtime
    clear_cart_cookie(response, runtime.settings)
    try:
        guest_cart_id = service.read_cart_token(runtime.settings.secret_key, token)
    except Problem:
        return
    await service.merge_carts(
        uow,
        guest_cart_id,
        user.id,
        limits=CartLimits.from_settings(runtime.settings),
        cache=service.cache_for(runtime),
    )
