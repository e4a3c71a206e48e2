"""The cart API: the caller's cart (a customer's, or a guest's from the signed token)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from mercato.cart import service
from mercato.cart.schemas import AddItemIn, CartOut, SetQuantityIn
from mercato.cart.service import CART_COOKIE, CART_HEADER, CartLimits, CartOwner
from mercato.identity.deps import OptionalUser
from mercato.identity.service import UserInfo
from mercato.problems import Problem
from mercato.runtime import Runtime, RuntimeDep, SessionDep
from mercato.settings import Settings

router = APIRouter(prefix="/api/cart", tags=["cart"])


@dataclass(frozen=True, slots=True)
class Caller:
    owner: CartOwner
    token_from_cookie: bool = False


def _presented_token(request: Request) -> tuple[str | None, bool]:
    """The guest token from the ``X-Cart-Token`` header, else the cookie; (token, from_cookie)."""
    header = request.headers.get(CART_HEADER)
    if header:
        return header, False
    cookie = request.cookies.get(CART_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _set_cart_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        CART_COOKIE,
        token,
        max_age=settings.guest_cart_ttl_seconds,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def _clear_cart_cookie(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        CART_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure
    )


def _cookie_clearing_header(settings: Settings) -> str:
    scratch = Response()
    _clear_cart_cookie(scratch, settings)
    return scratch.headers["set-cookie"]


@contextmanager
def _stale_cookie_cleared(caller: Caller, settings: Settings) -> Iterator[None]:
    """A cookie naming a cart that is gone is cleared with the 400, so the browser recovers."""
    try:
        yield
    except Problem as exc:
        if exc.code == "invalid_cart_token" and caller.token_from_cookie:
            exc.headers = {**(exc.headers or {}), "set-cookie": _cookie_clearing_header(settings)}
        raise


async def get_caller(request: Request, runtime: RuntimeDep, user: OptionalUser) -> Caller:
    """Signed-in customers use their own cart (a guest token is then ignored); guests the cart
    their token names. A forged token is a 400 ``invalid_cart_token``."""
    if user is not None:
        return Caller(CartOwner(user_id=user.id))
    token, from_cookie = _presented_token(request)
    if token is None:
        return Caller(CartOwner())
    caller = Caller(CartOwner(), token_from_cookie=from_cookie)
    with _stale_cookie_cleared(caller, runtime.settings):
        cart_id = service.read_cart_token(runtime.settings.secret_key, token)
    return Caller(CartOwner(guest_cart_id=cart_id), token_from_cookie=from_cookie)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def _answer(
    session: AsyncSession,
    runtime: Runtime,
    cart: service.CartInfo | None,
    response: Response | None = None,
    change: service.CartChange | None = None,
) -> CartOut:
    view = await service.view_cart(
        session,
        cart,
        low_stock_threshold=runtime.settings.low_stock_threshold,
        known_variants=change.variants if change is not None else None,
        known_stock=change.stock if change is not None else None,
    )
    out = CartOut.model_validate(view)
    if cart is not None and cart.is_guest:
        out.cart_token = service.sign_cart_token(runtime.settings.secret_key, cart.id)
        if response is not None:
            _set_cart_cookie(response, runtime.settings, out.cart_token)
    return out


async def _answer_change(
    session: AsyncSession,
    runtime: Runtime,
    change: service.CartChange | str | None,
    response: Response,
) -> CartOut:
    """The cart after a change: as the change hands it over, else read again by id."""
    if isinstance(change, service.CartChange) and change.cart is not None:
        return await _answer(session, runtime, change.cart, response, change)
    cart_id = change.cart_id if isinstance(change, service.CartChange) else change
    cart = await service.get_cart(session, cart_id) if cart_id is not None else None
    return await _answer(session, runtime, cart, response)


@router.get("", response_model=CartOut)
async def show_cart(session: SessionDep, runtime: RuntimeDep, caller: CallerDep) -> CartOut:
    """The caller's cart with current prices, price-change and stock flags, and totals."""
    with _stale_cookie_cleared(caller, runtime.settings):
        cart = await service.load_cart(session, caller.owner, cache=service.cache_for(runtime))
    return await _answer(session, runtime, cart)


@router.post("/items", response_model=CartOut, status_code=status.HTTP_201_CREATED)
async def add_item(
    body: AddItemIn,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    response: Response,
) -> CartOut:
    """Add a variant (a guest's first add creates the cart and returns its ``cart_token``)."""
    with _stale_cookie_cleared(caller, runtime.settings):
        change = await service.add_item(
            session,
            caller.owner,
            body.variant_id,
            body.quantity,
            limits=CartLimits.from_settings(runtime.settings),
            cache=service.cache_for(runtime),
        )
    return await _answer_change(session, runtime, change, response)


@router.patch("/items/{line_id}", response_model=CartOut)
async def set_quantity(
    line_id: str,
    body: SetQuantityIn,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    response: Response,
) -> CartOut:
    with _stale_cookie_cleared(caller, runtime.settings):
        change = await service.set_quantity(
            session,
            caller.owner,
            line_id,
            body.quantity,
            limits=CartLimits.from_settings(runtime.settings),
            cache=service.cache_for(runtime),
        )
    return await _answer_change(session, runtime, change, response)


@router.delete("/items/{line_id}", response_model=CartOut)
async def remove_item(
    line_id: str,
    session: SessionDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    response: Response,
) -> CartOut:
    with _stale_cookie_cleared(caller, runtime.settings):
        change = await service.remove_item(
            session,
            caller.owner,
            line_id,
            limits=CartLimits.from_settings(runtime.settings),
            cache=service.cache_for(runtime),
        )
    return await _answer_change(session, runtime, change, response)


@router.delete("", response_model=CartOut)
async def empty_cart(
    session: SessionDep,
    runtime: RuntimeDep,
    caller: CallerDep,
    response: Response,
) -> CartOut:
    """Remove every line; the (now empty) cart is returned."""
    with _stale_cookie_cleared(caller, runtime.settings):
        cart_id = await service.empty_cart(
            session,
            caller.owner,
            limits=CartLimits.from_settings(runtime.settings),
            cache=service.cache_for(runtime),
        )
    return await _answer_change(session, runtime, cart_id, response)


async def merge_guest_cart_on_login(
    session: AsyncSession, request: Request, response: Response, user: UserInfo
) -> None:
    """Login hook: the guest cart the request carries joins the customer's cart, then is gone.

    A missing, forged or stale token never fails a login: there is simply nothing to merge."""
    token, _ = _presented_token(request)
    if token is None:
        return
    runtime: Runtime = request.app.state.runtime
    _clear_cart_cookie(response, runtime.settings)
    try:
        guest_cart_id = service.read_cart_token(runtime.settings.secret_key, token)
    except Problem:
        return
    await service.merge_carts(
        session,
        guest_cart_id,
        user.id,
        limits=CartLimits.from_settings(runtime.settings),
        cache=service.cache_for(runtime),
    )
