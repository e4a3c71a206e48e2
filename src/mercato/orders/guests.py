"""Guests' orders: who may see and change an order, the signed link mailed to a guest, the
lookup by order number and e-mail, and a guest's orders joining the account of that e-mail.

**Who may act on an order** (:func:`order_for`, the one rule the API and the pages use): its
customer (the signed-in user the order belongs to), or whoever holds the order's *access
token*, an HMAC of the shop's secret over the order id and its e-mail. The token is what the
order's mails link to and what a lookup by number and e-mail answers, so holding it proves one
either read that mailbox or knew both the number and the address. No row stores it: it is
derived again whenever it is checked. It keeps working once the order joins an account (the
mailbox is still the account's).

**Lookup** answers the same for an unknown order and for a known order with another e-mail,
and does the same work for both (one read, one HMAC, one constant-time comparison); the
callers count lookups per client IP.

**Joining**: an order placed without an account has no customer; when an account's e-mail is
verified (at verification, or at a login of an account verified already), the guest orders of
that exact address become the account's. Idempotent: an order that has a customer is never
moved.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from sqlalchemy import select, update

from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.orders.cancellation import cancel_order
from mercato.orders.lifecycle import MAX_ACTOR
from mercato.orders.queries import ORDERS, OrderInfo, get_order
from mercato.problems import Problem, not_found
from mercato.ratelimit import Rate, TokenBucketLimiter, limiter_for, throttle
from mercato.runtime import Runtime

TOKEN_MAX_LENGTH = 100
ORDER_NUMBER_MAX_LENGTH = 40
_PURPOSE = b"mercato.orders.guest-access.v1"


@dataclass(frozen=True, slots=True)
class OrderCaller:
    """Who is asking about an order: a signed-in customer, or the holder of an access token
    (either may be None)."""

    user_id: str | None = None
    access_token: str | None = None


def order_access_token(secret_key: str, order_id: str, email: str) -> str:
    """The token that opens order ``order_id`` (of ``email``) without an account."""
    key = hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()
    digest = hmac.new(key, f"{order_id}\n{email}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _token_matches(secret_key: str, order_id: str, email: str, token: str) -> bool:
    expected = order_access_token(secret_key, order_id, email)
    return hmac.compare_digest(expected.encode(), token.encode()[:TOKEN_MAX_LENGTH])


def may_act_on(secret_key: str, order: OrderInfo, caller: OrderCaller) -> bool:
    """The rule: the order's customer, or the holder of its access token."""
    if caller.user_id is not None and order.user_id == caller.user_id:
        return True
    token = caller.access_token
    return bool(token) and _token_matches(secret_key, order.id, order.email, token or "")


async def order_for(
    uow: UnitOfWork, order_id: str, caller: OrderCaller, *, secret_key: str
) -> OrderInfo | None:
    """The order when ``caller`` may see and act on it; None otherwise (callers answer 404 for
    an unknown order and someone else's alike)."""
    if len(order_id) > ORDER_NUMBER_MAX_LENGTH:
        return None
    order = await get_order(uow, order_id)
    if order is None or not may_act_on(secret_key, order, caller):
        return None
    return order


def no_such_order() -> Problem:
    """The one answer to a lookup that found nothing: unknown order and wrong e-mail alike."""
    return Problem(
        404,
        "order_not_found",
        "No order matches this order number and e-mail address",
        title="Not found",
    )


@dataclass(frozen=True, slots=True)
class FoundOrder:
    order: OrderInfo
    access_token: str


@dataclass(frozen=True, slots=True)
class LookupThrottle:
    """The allowance of lookups of one client IP: guessing pairs of number and e-mail is what
    it slows down."""

    limiter: TokenBucketLimiter
    rate: Rate
    ip: str

    @classmethod
    def for_caller(cls, runtime: Runtime, ip: str) -> LookupThrottle:
        rate = Rate.per_minute(runtime.settings.order_lookups_per_ip_per_minute)
        return cls(limiter_for(runtime), rate, ip)


async def lookup_order(
    uow: UnitOfWork,
    order_number: str,
    email: str,
    *,
    secret_key: str,
    throttle_by: LookupThrottle | None,
) -> FoundOrder:
    """The order with this number placed with this e-mail, and its access token; 404
    ``order_not_found`` for an unknown number and a wrong e-mail alike, after the same work.
    Counted against the caller's allowance first (429 ``rate_limited`` with ``Retry-After``).
    The e-mail is spelled as orders store it (normalised like an account's); one that is no
    address once normalised simply matches no order."""
    if throttle_by is not None:
        await throttle(
            throttle_by.limiter,
            {f"orders:lookup:{throttle_by.ip}": throttle_by.rate},
            detail="Too many order lookups from your address; try again in a minute",
        )
    address = identity.normalize_email(email)
    number = order_number.strip()
    row = None
    if 0 < len(number) <= ORDER_NUMBER_MAX_LENGTH:
        row = (
            await uow.execute(select(ORDERS.c.id, ORDERS.c.email).where(ORDERS.c.id == number))
        ).first()
    # The token is computed, and compared, whether or not the order exists.
    stored = row.email if row is not None else ""
    expected = order_access_token(secret_key, number, stored)
    offered = order_access_token(secret_key, number, address)
    if row is None or not hmac.compare_digest(expected, offered):
        raise no_such_order()
    order = await get_order(uow, number)
    if order is None:
        raise no_such_order()
    return FoundOrder(order, offered)


async def join_guest_orders(uow: UnitOfWork, user: identity.UserInfo) -> int:
    """Give ``user`` the guest orders placed with their e-mail, once that e-mail is verified
    (an unverified account proves nothing about the mailbox). Returns how many joined."""
    if user.email_verified_at is None:
        return 0
    o = ORDERS.c
    return await uow.changed(
        update(ORDERS).where(o.user_id.is_(None), o.email == user.email).values(user_id=user.id)
    )


def actor_of(order: OrderInfo, caller: OrderCaller) -> str:
    """How an order's history names who changed it: the customer, or a guest by its link."""
    if caller.user_id is not None and order.user_id == caller.user_id:
        return f"customer:{caller.user_id}"[:MAX_ACTOR]
    return "guest"


async def cancel_order_for(
    runtime: Runtime, order_id: str, caller: OrderCaller, *, reason: str | None = None
) -> OrderInfo:
    """:func:`~mercato.orders.cancellation.cancel_order` for whoever may act on the order (its
    customer or the holder of its access token); 404 for anyone else."""
    async with runtime.db.transaction() as uow:
        order = await order_for(uow, order_id, caller, secret_key=runtime.settings.secret_key)
    if order is None:
        raise not_found("Order", order_id)
    return await cancel_order(runtime, order_id, actor=actor_of(order, caller), reason=reason)
