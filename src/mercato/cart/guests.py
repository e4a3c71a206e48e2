"""Guests' writes, slowed down per client IP.

Anyone may create a cart, change it and have it priced without an account, so these writes are
what a script floods first (every new cart is a row). They are counted per client IP, with
allowances far above what the shoppers behind one address (an office, a mobile carrier's NAT)
do: ``MERCATO_GUEST_WRITES_PER_IP_PER_MINUTE`` for every change and quote, and the slower
``MERCATO_GUEST_CARTS_PER_IP_PER_HOUR`` for the adds that create a cart. Signed-in customers
are not counted here: their writes are tied to an account, and signing in is throttled.
"""

from __future__ import annotations

from dataclasses import dataclass

from mercato.cart.changes import Edit
from mercato.cart.common import CartOwner
from mercato.ratelimit import Rate, TokenBucketLimiter, limiter_for, throttle
from mercato.runtime import Runtime

TOO_MANY_WRITES = "Too many changes from your address; try again in a minute"


@dataclass(frozen=True, slots=True)
class GuestThrottle:
    """The allowances of one caller (its client IP) for writes made without an account."""

    limiter: TokenBucketLimiter
    writes: Rate
    new_carts: Rate
    ip: str

    @classmethod
    def for_caller(cls, runtime: Runtime, ip: str) -> GuestThrottle:
        settings = runtime.settings
        return cls(
            limiter=limiter_for(runtime),
            writes=Rate.per_minute(settings.guest_writes_per_ip_per_minute),
            new_carts=Rate.per_hour(settings.guest_carts_per_ip_per_hour),
            ip=ip,
        )


def creates_cart(owner: CartOwner, edit: Edit | None) -> bool:
    """Whether ``edit`` makes a new cart row: a guest's add without a cart."""
    return (
        owner.user_id is None
        and owner.guest_cart_id is None
        and edit is not None
        and edit.kind == "add"
    )


async def throttle_guest(guard: GuestThrottle, owner: CartOwner, edit: Edit | None = None) -> None:
    """Count a guest's write (``edit`` to its cart, or a quote when None) against its IP; 429
    ``rate_limited`` with ``Retry-After`` past the allowance. A customer's write is not
    counted."""
    if owner.user_id is not None:
        return
    buckets = {f"guest:writes:{guard.ip}": guard.writes}
    if creates_cart(owner, edit):
        buckets[f"guest:carts:{guard.ip}"] = guard.new_carts
    await throttle(guard.limiter, buckets, detail=TOO_MANY_WRITES)
