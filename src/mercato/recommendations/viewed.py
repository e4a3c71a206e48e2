"""Recently viewed: the last :data:`KEEP` products each shopper looked at, most recent first.

A signed-in customer's list is kept under their user id. A guest's is kept under a random key
(``gst_…``) that the browser holds in the signed, HttpOnly ``mercato_viewed`` cookie: a cookie
of its own rather than the guest cart's token, since most shoppers look before they fill a cart
(and a cart's token is made only by adding to it). Views are recorded by the storefront's
product page only; the JSON API's product reads are apps and scripts, not someone looking.

A client that keeps no cookies (a crawler) writes nothing: the first page a browser sees sets
the cookie with that product *pending* in it, and only when the cookie comes back is the
pending product written (just before the one being viewed). Guests' rows nobody came back to
for :data:`GUEST_DAYS` days are deleted by the worker.

Logging in merges the guest's list into the customer's (union, most recent first, bounded)
through identity's ``after_login_hooks``, as the guest cart is merged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Table, case, delete, select

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.identity.service import UserInfo
from mercato.ids import new_id
from mercato.recommendations.models import RecentView
from mercato.recommendations.wishlist import dialect_insert, is_saved
from mercato.runtime import Runtime
from mercato.settings import Settings

VIEWS = cast(Table, RecentView.__table__)
KEEP = 50
GUEST_PREFIX = "gst_"
GUEST_DAYS = 30
VIEWED_COOKIE = "mercato_viewed"
_SALT = "mercato.recently-viewed"
_MAX_TOKEN = 300
# The pending product is written just before the one viewed, so it sorts after it.
_EARLIER = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking: a customer, or a guest's key and the product pending in its cookie."""

    user_id: str | None = None
    guest_key: str | None = None
    pending: str | None = None
    cookie_returned: bool = False  # the browser sent a good cookie back: it keeps cookies


@dataclass(frozen=True, slots=True)
class PageSignals:
    """What the product page shows of the shopper's own signals, and the cookie to set."""

    saved: bool
    recently_viewed: list[catalog.ProductCard]
    cookie: str | None  # a new ``mercato_viewed`` value for the browser, if any


def _serializer(secret_key: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=_SALT)


def _guest(key: object) -> bool:
    return isinstance(key, str) and key.startswith(GUEST_PREFIX) and len(key) <= 40


def sign_viewer(secret_key: str, guest_key: str, pending: str | None = None) -> str:
    return str(_serializer(secret_key).dumps([guest_key, pending]))


def read_viewer(secret_key: str, token: str | None) -> tuple[str, str | None] | None:
    """The guest key and pending product a cookie holds; None when missing or forged."""
    if not token or len(token) > _MAX_TOKEN:
        return None
    try:
        value = _serializer(secret_key).loads(token)
    except BadSignature:
        return None
    if not isinstance(value, list) or len(value) != 2 or not _guest(value[0]):
        return None
    pending = value[1] if isinstance(value[1], str) and len(value[1]) <= 40 else None
    return value[0], pending


def viewer_of(request: Request, secret_key: str, user_id: str | None) -> Viewer:
    """The shopper a page request comes from (never fails on a bad cookie: a new guest)."""
    if user_id is not None:
        return Viewer(user_id=user_id)
    found = read_viewer(secret_key, request.cookies.get(VIEWED_COOKIE))
    if found is None:
        return Viewer()
    return Viewer(guest_key=found[0], pending=found[1], cookie_returned=True)


def set_viewer_cookie(response: Response, settings: Settings, token: str) -> None:
    response.set_cookie(
        VIEWED_COOKIE,
        token,
        max_age=GUEST_DAYS * 24 * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=settings.cookie_secure,
    )


def _owner(user_id: str | None, guest_key: str | None) -> str | None:
    if user_id is not None:
        return user_id
    return guest_key if _guest(guest_key) else None


async def _write(uow: UnitOfWork, owner: str, views: Sequence[tuple[str, datetime]]) -> None:
    """Upsert (product, when) for ``owner``, a later time winning, then keep the last KEEP."""
    if not views:
        return
    c = VIEWS.c
    insert = dialect_insert(uow, VIEWS).values(
        [{"owner": owner, "product_id": p, "viewed_at": at} for p, at in views]
    )
    await uow.execute(
        insert.on_conflict_do_update(
            index_elements=[c.owner, c.product_id],
            set_={
                "viewed_at": case(
                    (insert.excluded.viewed_at > c.viewed_at, insert.excluded.viewed_at),
                    else_=c.viewed_at,
                )
            },
        )
    )
    kept = (
        select(c.product_id)
        .where(c.owner == owner)
        .order_by(c.viewed_at.desc(), c.product_id)
        .limit(KEEP)
    )
    await uow.execute(delete(VIEWS).where(c.owner == owner, c.product_id.not_in(kept)))


async def record_view(
    uow: UnitOfWork,
    *,
    user_id: str | None,
    guest_key: str | None,
    product_id: str,
    now: datetime | None = None,
) -> None:
    """The shopper looked at ``product_id`` (nothing is kept for nobody)."""
    owner = _owner(user_id, guest_key)
    if owner is not None:
        await _write(uow, owner, [(product_id, now or utcnow())])


async def recently_viewed(
    uow: UnitOfWork, *, user_id: str | None, guest_key: str | None, limit: int
) -> list[str]:
    """The products the customer (else the guest with this key) viewed, most recent first."""
    owner = _owner(user_id, guest_key)
    if owner is None or limit <= 0:
        return []
    c = VIEWS.c
    rows = await uow.execute(
        select(c.product_id)
        .where(c.owner == owner)
        .order_by(c.viewed_at.desc(), c.product_id)
        .limit(min(limit, KEEP))
    )
    return [r[0] for r in rows]


async def merge_recently_viewed(
    uow: UnitOfWork, guest_key: str, user_id: str, *, pending: str | None = None
) -> None:
    """The guest's list joins the customer's (a product in both keeps its latest view; the
    last KEEP stay), and the guest's rows are gone."""
    if not _guest(guest_key):
        return
    c = VIEWS.c
    rows = [
        (r.product_id, r.viewed_at)
        for r in await uow.execute(select(c.product_id, c.viewed_at).where(c.owner == guest_key))
    ]
    if pending is not None:
        rows.append((pending, utcnow()))
    await _write(uow, user_id, rows)
    await uow.execute(delete(VIEWS).where(c.owner == guest_key))


async def forget_stale_guest_views(uow: UnitOfWork, *, now: datetime | None = None) -> int:
    """Delete guests' views older than GUEST_DAYS (their cookie has expired too)."""
    c = VIEWS.c
    before = (now or utcnow()) - timedelta(days=GUEST_DAYS)
    return await uow.changed(
        delete(VIEWS).where(c.owner.like(f"{GUEST_PREFIX}%"), c.viewed_at < before)
    )


async def page_signals(
    uow: UnitOfWork,
    viewer: Viewer,
    product_id: str,
    *,
    secret_key: str,
    limit: int,
    now: datetime | None = None,
) -> PageSignals:
    """A product page was viewed: record it, and answer whether the customer saved the product
    and what the shopper viewed before it (active products, this one left out). A guest whose
    browser sent no cookie yet gets one with this product pending (see the module's text)."""
    now = now or utcnow()
    cookie = None
    if viewer.user_id is None and not viewer.cookie_returned:
        cookie = sign_viewer(secret_key, new_id("gst"), product_id)
        return PageSignals(False, [], cookie)
    owner = _owner(viewer.user_id, viewer.guest_key)
    if owner is None:
        return PageSignals(False, [], None)
    views = [(product_id, now)]
    if viewer.pending is not None and viewer.pending != product_id:
        views.insert(0, (viewer.pending, now - _EARLIER))
    if viewer.pending is not None and viewer.guest_key is not None:
        cookie = sign_viewer(secret_key, viewer.guest_key)  # the pending product is written
    await _write(uow, owner, views)
    before = [
        p
        for p in await recently_viewed(
            uow, user_id=viewer.user_id, guest_key=viewer.guest_key, limit=limit + 1
        )
        if p != product_id
    ][:limit]
    cards = await catalog.product_cards(uow, before)
    saved = viewer.user_id is not None and await is_saved(uow, viewer.user_id, product_id)
    return PageSignals(saved, [cards[p] for p in before if p in cards], cookie)


async def merge_viewed_on_login(
    uow: UnitOfWork, request: Request, response: Response, user: UserInfo
) -> None:
    """Login hook: the guest's recently viewed join the customer's, and the cookie goes. A
    missing or forged cookie never fails a login: there is nothing to merge."""
    token = request.cookies.get(VIEWED_COOKIE)
    if token is None:
        return
    runtime: Runtime = request.app.state.runtime
    settings = runtime.settings
    response.delete_cookie(
        VIEWED_COOKIE, path="/", httponly=True, samesite="lax", secure=settings.cookie_secure
    )
    found = read_viewer(settings.secret_key, token)
    if found is not None:
        await merge_recently_viewed(uow, found[0], user.id, pending=found[1])
