"""Who is looking at a page: the signed-in user from the HttpOnly session cookie (pages never
take a bearer token). A stale cookie means "signed out"; a staff page asks for a login (401,
which the page renderer turns into a redirect to the login form) or refuses (403)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from mercato.identity import service as identity
from mercato.identity.deps import COOKIE_NAME
from mercato.identity.service import Destination, UserInfo
from mercato.marketplace import service as marketplace
from mercato.problems import Problem
from mercato.runtime import RuntimeDep


async def page_user(request: Request, runtime: RuntimeDep) -> UserInfo | None:
    """The signed-in user, read in a transaction of its own that ends at once: pages run their
    changes in transactions of their own, and on SQLite a request-long transaction would hold
    the write lock those wait for (and serialise every signed-in page view)."""
    cached: UserInfo | None = getattr(request.state, "page_user", None)
    if cached is not None:
        return cached
    token = request.cookies.get(COOKIE_NAME)
    if not token:
        return None
    async with runtime.db.transaction() as uow:
        check = await identity.check_token(uow, token)
    request.state.page_user = check.user
    return check.user


def login_required() -> Problem:
    return Problem(401, "unauthorized", "Log in to see this page", title="Log in")


async def signed_in_user(user: Annotated[UserInfo | None, Depends(page_user)]) -> UserInfo:
    if user is None:
        raise login_required()
    return user


async def staff_user(user: Annotated[UserInfo, Depends(signed_in_user)]) -> UserInfo:
    if user.role != "staff":
        raise Problem(403, "forbidden", "This page is for the shop's staff", title="Staff only")
    return user


PageUser = Annotated[UserInfo | None, Depends(page_user)]
SignedInUser = Annotated[UserInfo, Depends(signed_in_user)]
PageStaff = Annotated[UserInfo, Depends(staff_user)]


@dataclass(frozen=True, slots=True)
class SellerCaller:
    """A seller account on the seller portal, and the one seller it acts for."""

    user: UserInfo
    seller_id: str


async def seller_user(
    request: Request, user: Annotated[UserInfo, Depends(signed_in_user)], runtime: RuntimeDep
) -> SellerCaller:
    """The seller portal is for ``seller`` accounts, each seeing its own seller only (staff
    have the back office); an account acting for no seller is refused as the API refuses it."""
    cached: SellerCaller | None = getattr(request.state, "page_seller", None)
    if cached is not None:
        return cached
    if user.role != "seller":
        raise Problem(403, "forbidden", "This page is for the shop's sellers", title="Sellers only")
    async with runtime.db.transaction() as uow:
        seller_id = await marketplace.seller_scope(uow, user)
    assert seller_id is not None  # only staff see every seller
    caller = SellerCaller(user, seller_id)
    request.state.page_seller = caller
    return caller


PageSeller = Annotated[SellerCaller, Depends(seller_user)]


DELIVER_TO_COOKIE = "mercato_deliver_to"


async def page_destination(request: Request, runtime: RuntimeDep, user: PageUser) -> Destination:
    """Where this shopper's goods would go: the "Deliver to" choice kept in a cookie (ignored
    when stale: a country the shop stopped serving), their default address, the shop's
    default."""
    cached: Destination | None = getattr(request.state, "page_destination", None)
    if cached is not None:
        return cached
    async with runtime.db.transaction() as uow:
        found, served = await identity.destination_and_choices(
            uow,
            chosen=request.cookies.get(DELIVER_TO_COOKIE),
            user_id=user.id if user is not None else None,
            shop_default=runtime.settings.default_country,
            strict=False,
        )
    request.state.page_destination = found
    # What the header's "Deliver to" offers (rendering reads it from here).
    request.state.deliver_to_choices = served
    return found


PageDestination = Annotated[Destination, Depends(page_destination)]
