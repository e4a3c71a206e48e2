"""Promo codes: what a code is worth, when it may be used, and counting its uses.

A code is checked in one place, :func:`check_promo` (for staff making one, through the API or
the back office) and :func:`check_promo_usable` (for a shopper using one). A use is taken with
one conditional ``UPDATE … SET used_count = used_count + 1 WHERE used_count < usage_limit``:
the database decides who gets the last use, and the row lock that UPDATE takes serialises the
per-customer count that follows in the same transaction. A use is given back (or made final) by
flipping the redemption row's state with a conditional UPDATE, so each use is counted and
returned at most once.

Guessing codes is slowed down by :class:`PromoGuard`: a shopper who names a code spends one of
the cart's allowance and one of the client IP's before the code is looked up, and gets it back
unless there is no such code. So only guesses that missed count: a valid code can be quoted any
number of times, and a real code that is used up or expired costs nothing (fifty shoppers
behind one address racing for a code's last uses are not guessing). A cart that keeps sending
the same wrong code is charged once, and a caller whose allowance is spent is refused (429)
before anything is looked up: a refusal never tells whether the code would have worked.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Row, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from mercato.checkout.common import check_amount, check_currency, minor
from mercato.checkout.common import insert as dialect_insert
from mercato.checkout.models import promo_codes, redemptions
from mercato.checkout.pricing import BPS, PromoKind, PromoTerms
from mercato.checkout.schemas import PromoIn, percent_to_bps
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.problems import Problem, validation_problem
from mercato.ratelimit import Rate, TokenBucketLimiter, limiter_for, rate_limited, throttle
from mercato.runtime import Runtime

_PROMO_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{1,31}$")


@dataclass(frozen=True, slots=True)
class PromoInfo:
    id: str
    code: str
    kind: PromoKind
    value: int
    currency: str | None
    min_subtotal: int
    starts_at: datetime | None
    ends_at: datetime | None
    usage_limit: int | None
    per_customer_limit: int | None
    used_count: int
    active: bool

    def terms(self) -> PromoTerms:
        return PromoTerms(self.code, self.kind, self.value, self.min_subtotal)


def _promo_info(row: Row[Any]) -> PromoInfo:
    return PromoInfo(
        id=row.id,
        code=row.code,
        kind=cast(PromoKind, row.kind),
        value=int(row.value),
        currency=row.currency,
        min_subtotal=int(row.min_subtotal),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        usage_limit=row.usage_limit,
        per_customer_limit=row.per_customer_limit,
        used_count=row.used_count,
        active=bool(row.active),
    )


def normalize_promo_code(value: str) -> str:
    return value.strip().upper()


# --------------------------------------------------------------------------------------------
# Making codes


@dataclass(frozen=True, slots=True)
class PromoAmounts:
    """A code's worth as stored: basis points (percent) or minor units (fixed), and its
    minimum order in minor units."""

    value: int
    min_subtotal: int


def check_promo(body: PromoIn, shop_currency: str) -> PromoAmounts:
    """Every rule a new code's figures must meet, as one 422 ``validation_error`` listing each
    failing field (staff see them all at once): a percentage above 0 and at most 100 with two
    decimals, a fixed amount with its currency, amounts exact in that currency (a minimum order
    of a code without one in ``shop_currency``), times with a time zone."""
    errors: list[tuple[str, str]] = []
    value: int | None = None
    if body.kind == "percent":
        try:
            value = percent_to_bps(body.value)
        except ValueError as exc:
            errors.append(("value", str(exc)))
        else:
            if value == 0:
                errors.append(("value", "must be more than 0"))
    elif body.currency is None:
        errors.append(("currency", "a fixed-amount code needs a currency"))
    else:
        value = _collect(errors, body.value, body.currency, "value")
    minimum = _collect(errors, body.min_subtotal, body.currency or shop_currency, "min_subtotal")
    for name in ("starts_at", "ends_at"):
        moment: datetime | None = getattr(body, name)
        if moment is not None and moment.tzinfo is None:
            errors.append((name, "needs a time zone, e.g. 2026-01-01T00:00:00Z"))
    if errors:
        raise _invalid(errors)
    assert value is not None and minimum is not None
    return PromoAmounts(value, minimum)


def _collect(errors: list[tuple[str, str]], amount: str, currency: str, field: str) -> int | None:
    try:
        return minor(amount, currency, field)
    except Problem as problem:
        errors.append((field, problem.extra["errors"][0]["message"]))
        return None


def _invalid(errors: list[tuple[str, str]]) -> Problem:
    first_field, first_message = errors[0]
    return Problem(
        422,
        "validation_error",
        f"{first_field}: {first_message}",
        title="Invalid request",
        errors=[{"field": f, "message": m, "type": "validation_error"} for f, m in errors],
    )


async def create_promo(uow: UnitOfWork, body: PromoIn, shop_currency: str) -> PromoInfo:
    """A code as staff send it (percentages and amounts as decimal strings), for the API and
    the back office; a minimum order without a currency is read in ``shop_currency``."""
    amounts = check_promo(body, shop_currency)
    return await create_promo_code(
        uow,
        code=body.code,
        kind=body.kind,
        value=amounts.value,
        currency=body.currency,
        min_subtotal=amounts.min_subtotal,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        usage_limit=body.usage_limit,
        per_customer_limit=body.per_customer_limit,
        active=body.active,
    )


async def create_promo_code(
    uow: UnitOfWork,
    *,
    code: str,
    kind: PromoKind,
    value: int,
    currency: str | None = None,
    min_subtotal: int = 0,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    usage_limit: int | None = None,
    per_customer_limit: int | None = None,
    active: bool = True,
) -> PromoInfo:
    """A code in stored units (basis points or minor units). A refused code writes nothing."""
    code = normalize_promo_code(code)
    if not _PROMO_CODE.match(code):
        raise validation_problem("code", "2-32 letters, digits, '-' or '_'")
    if kind not in ("percent", "fixed"):
        raise validation_problem("kind", "must be percent or fixed")
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise validation_problem("value", "must be positive")
    if kind == "percent" and value > BPS:
        raise validation_problem("value", "a percentage is at most 10000 basis points (100 %)")
    if kind == "fixed":
        if currency is None:
            raise validation_problem("currency", "a fixed-amount code needs a currency")
        check_amount(value, "value")
    if currency is not None:
        check_currency(currency)
    check_amount(min_subtotal, "min_subtotal")
    if starts_at is not None and ends_at is not None and ends_at <= starts_at:
        raise validation_problem("ends_at", "must be after starts_at")
    if usage_limit is not None and usage_limit < 0:
        raise validation_problem("usage_limit", "must not be negative")
    if per_customer_limit is not None and per_customer_limit < 1:
        raise validation_problem("per_customer_limit", "must be at least 1")
    now = utcnow()
    promo = PromoInfo(
        id=new_id("promo"),
        code=code,
        kind=kind,
        value=value,
        currency=currency,
        min_subtotal=min_subtotal,
        starts_at=starts_at,
        ends_at=ends_at,
        usage_limit=usage_limit,
        per_customer_limit=per_customer_limit,
        used_count=0,
        active=active,
    )
    values = {
        "id": promo.id,
        "code": code,
        "kind": kind,
        "value": value,
        "currency": currency,
        "min_subtotal": min_subtotal,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "usage_limit": usage_limit,
        "per_customer_limit": per_customer_limit,
        "used_count": 0,
        "active": active,
        "created_at": now,
        "updated_at": now,
    }
    done = await uow.changed(
        dialect_insert(uow, promo_codes)
        .values(values)
        .on_conflict_do_nothing(index_elements=[promo_codes.c.code])
    )
    if done != 1:
        raise Problem(409, "promo_code_exists", f"The promo code {code} already exists")
    return promo


async def set_promo_active(uow: UnitOfWork, promo_id: str, active: bool) -> PromoInfo:
    """Switch a promo code off (checkouts then refuse it as ``inactive``; uses already taken
    stay counted) or back on."""
    done = await uow.changed(
        update(promo_codes)
        .where(promo_codes.c.id == promo_id)
        .values(active=active, updated_at=utcnow())
    )
    if done != 1:
        raise Problem(404, "not_found", f"Promo code {promo_id!r} was not found", title="Not found")
    promo = await get_promo(uow, promo_id)
    assert promo is not None
    return promo


# --------------------------------------------------------------------------------------------
# Reading


async def list_promo_codes(uow: UnitOfWork) -> list[PromoInfo]:
    rows = await uow.execute(select(promo_codes).order_by(promo_codes.c.code))
    return [_promo_info(r) for r in rows]


async def get_promo_by_code(uow: UnitOfWork, code: str) -> PromoInfo | None:
    row = (
        await uow.execute(
            select(promo_codes).where(promo_codes.c.code == normalize_promo_code(code))
        )
    ).first()
    return _promo_info(row) if row is not None else None


async def get_promo(uow: UnitOfWork, promo_id: str) -> PromoInfo | None:
    row = (await uow.execute(select(promo_codes).where(promo_codes.c.id == promo_id))).first()
    return _promo_info(row) if row is not None else None


async def promo_redemption_counts(uow: UnitOfWork, promo_id: str) -> dict[str, int]:
    """{state: count} of a promo's redemptions (for checks and the staff view)."""
    rows = await uow.execute(
        select(redemptions.c.state, func.count())
        .where(redemptions.c.promo_id == promo_id)
        .group_by(redemptions.c.state)
    )
    counts = dict.fromkeys(("reserved", "committed", "released"), 0)
    counts.update({state: int(n) for state, n in rows})
    return counts


@dataclass(frozen=True, slots=True)
class PromoRow:
    """A code with its redemptions, as the back office lists them."""

    promo: PromoInfo
    counts: dict[str, int]


async def list_promos_with_uses(uow: UnitOfWork) -> list[PromoRow]:
    """Every code with {state: count} of its redemptions, in two statements."""
    promos = await list_promo_codes(uow)
    counts: dict[str, dict[str, int]] = {
        p.id: dict.fromkeys(("reserved", "committed", "released"), 0) for p in promos
    }
    rows = await uow.execute(
        select(redemptions.c.promo_id, redemptions.c.state, func.count()).group_by(
            redemptions.c.promo_id, redemptions.c.state
        )
    )
    for promo_id, state, n in rows:
        if promo_id in counts:
            counts[promo_id][state] = int(n)
    return [PromoRow(p, counts[p.id]) for p in promos]


# --------------------------------------------------------------------------------------------
# Using codes


def invalid_promo(code: str, reason: str, detail: str) -> Problem:
    return Problem(
        422,
        "invalid_promo_code",
        detail,
        title="Invalid promo code",
        reason=reason,
        promo_code=code,
        errors=[{"field": "promo_code", "message": detail, "type": "promo"}],
    )


def check_promo_usable(
    promo: PromoInfo | None, code: str, *, currency: str, now: datetime
) -> PromoInfo:
    """The promo when it can be used now in ``currency``; else 422 ``invalid_promo_code`` with a
    ``reason`` (unknown, inactive, not_started, expired, currency, used_up). The usage limit is
    only pre-checked here; the real check is :func:`take_promo_use`."""
    if promo is None:
        raise invalid_promo(code, "unknown", f"There is no promo code {code!r}")
    if not promo.active:
        raise invalid_promo(code, "inactive", f"The code {promo.code} is no longer valid")
    if promo.starts_at is not None and now < promo.starts_at:
        raise invalid_promo(code, "not_started", f"The code {promo.code} is not valid yet")
    if promo.ends_at is not None and now >= promo.ends_at:
        raise invalid_promo(code, "expired", f"The code {promo.code} has expired")
    if promo.currency is not None and promo.currency != currency:
        raise invalid_promo(
            code, "currency", f"The code {promo.code} is for {promo.currency} orders"
        )
    if promo.usage_limit is not None and promo.used_count >= promo.usage_limit:
        raise promo_used_up(promo.code)
    return promo


def promo_used_up(code: str) -> Problem:
    return invalid_promo(code, "used_up", f"The code {code} has been used up")


# Built once: these run inside every checkout that uses a code.
_P = promo_codes.c
_R = redemptions.c
_TAKE_USE = (
    update(promo_codes)
    .where(
        _P.id == bindparam("b_promo"),
        _P.active.is_(True),
        or_(_P.usage_limit.is_(None), _P.used_count < _P.usage_limit),
    )
    .values(used_count=_P.used_count + 1, updated_at=bindparam("b_now"))
)
_CUSTOMER_USES = select(func.count()).where(
    _R.promo_id == bindparam("b_promo"),
    _R.user_id == bindparam("b_user"),
    _R.state.in_(("reserved", "committed")),
)
_USE_OF = select(_R.id).where(_R.checkout_id == bindparam("b_owner"))
_ADD_REDEMPTION = insert(redemptions)
_COMMIT_USE = (
    update(redemptions)
    .where(_R.checkout_id == bindparam("b_owner"), _R.state == "reserved")
    .values(state="committed", updated_at=bindparam("b_now"))
)
_RELEASE_USE = (
    update(redemptions)
    .where(_R.checkout_id == bindparam("b_owner"), _R.state == "reserved")
    .values(state="released", updated_at=bindparam("b_now"))
    .returning(_R.promo_id)
)
_GIVE_USE_BACK = (
    update(promo_codes)
    .where(_P.id == bindparam("b_promo"), _P.used_count > 0)
    .values(used_count=_P.used_count - 1, updated_at=bindparam("b_now"))
)


async def take_promo_use(
    uow: UnitOfWork,
    promo: PromoInfo,
    *,
    user_id: str,
    checkout_id: str,
    new_checkout: bool = False,
) -> None:
    """Take one use of ``promo`` for a checkout, or raise 422 ``invalid_promo_code``
    (``used_up``, ``customer_limit``). Idempotent per checkout; ``new_checkout=True`` says the
    checkout came into being in this very transaction, so it cannot hold a use yet (one
    statement fewer)."""
    if not new_checkout and await uow.scalar(_USE_OF, {"b_owner": checkout_id}):
        return
    now = utcnow()
    if await uow.changed(_TAKE_USE, {"b_promo": promo.id, "b_now": now}) != 1:
        raise promo_used_up(promo.code)
    # The UPDATE above holds the promo row's lock until commit, so no other checkout of this
    # code can count (or add) redemptions between this count and the insert below.
    if promo.per_customer_limit is not None:
        used = await uow.scalar(_CUSTOMER_USES, {"b_promo": promo.id, "b_user": user_id})
        if int(used or 0) >= promo.per_customer_limit:
            raise invalid_promo(
                promo.code,
                "customer_limit",
                f"The code {promo.code} can be used {promo.per_customer_limit} time(s) per "
                "customer",
            )
    row = {
        "id": new_id("prd"),
        "promo_id": promo.id,
        "user_id": user_id,
        "checkout_id": checkout_id,
        "state": "reserved",
        "created_at": now,
        "updated_at": now,
    }
    try:
        await uow.execute(_ADD_REDEMPTION, row)
    except IntegrityError as exc:  # pragma: no cover - one checkout takes its use once
        raise promo_used_up(promo.code) from exc


async def commit_promo_use(uow: UnitOfWork, checkout_id: str) -> bool:
    """The checkout became an order: its use is final. True when this call made it so."""
    return await uow.changed(_COMMIT_USE, {"b_owner": checkout_id, "b_now": utcnow()}) == 1


async def release_promo_use(uow: UnitOfWork, checkout_id: str) -> bool:
    """The checkout failed: give its use back (once). True when this call gave it back."""
    now = utcnow()
    released = (await uow.execute(_RELEASE_USE, {"b_owner": checkout_id, "b_now": now})).first()
    if released is None:
        return False
    await uow.execute(_GIVE_USE_BACK, {"b_promo": released.promo_id, "b_now": now})
    return True


# --------------------------------------------------------------------------------------------
# Guessing

# How long a cart's failed code is remembered, so that sending it again is not charged again.
_TRIED = Rate.per_hour(1)
TOO_MANY_ATTEMPTS = "Too many unknown promo codes were tried; try again later"


@dataclass(frozen=True, slots=True)
class PromoGuard:
    """The guessing throttle for one caller: its client IP, and the allowances of failed
    codes per cart and per IP (``MERCATO_PROMO_FAILURES_PER_*``)."""

    limiter: TokenBucketLimiter
    per_cart: Rate
    per_ip: Rate
    ip: str

    @classmethod
    def for_caller(cls, runtime: Runtime, ip: str) -> PromoGuard:
        settings = runtime.settings
        return cls(
            limiter=limiter_for(runtime),
            per_cart=Rate.per_hour(settings.promo_failures_per_cart_per_hour),
            per_ip=Rate.per_hour(settings.promo_failures_per_ip_per_hour),
            ip=ip,
        )

    async def take(self, cart_id: str) -> None:
        """Before a code is looked up: 429 ``rate_limited`` when the IP's or the cart's
        allowance is spent, whatever the code, so a throttled caller learns nothing about it.

        The cart's token is taken now (given back by :meth:`settle` unless the code turns out
        not to exist), so concurrent guesses on one cart get exactly its allowance. The IP's is
        only looked at, and spent afterwards: fifty shoppers behind one office address using a
        real code at once must not be refused while their attempts are in flight; concurrent
        failures from one address may overdraw it by as many as were in flight.
        """
        ip_key = f"promo:ip:{self.ip}"
        allowed, wait = await self.limiter.peek(
            ip_key, self.per_ip.capacity, self.per_ip.refill_per_second
        )
        if allowed:
            await throttle(
                self.limiter, {f"promo:cart:{cart_id}": self.per_cart}, detail=TOO_MANY_ATTEMPTS
            )
        else:
            raise rate_limited(wait, TOO_MANY_ATTEMPTS)

    async def settle(self, cart_id: str, *, counted: bool) -> None:
        """After the attempt: a failure that counts spends the IP's token; anything else gives
        the cart's back."""
        if counted:
            await self.limiter.take(
                f"promo:ip:{self.ip}", self.per_ip.capacity, self.per_ip.refill_per_second
            )
        else:
            await self.limiter.refund(
                f"promo:cart:{cart_id}", self.per_cart.capacity, self.per_cart.refill_per_second
            )

    async def first_failure(self, cart_id: str, code: str) -> bool:
        """Whether ``code`` failed for this cart for the first time (in the last hour)."""
        key = f"promo:tried:{cart_id}:{code}"
        allowed, _ = await self.limiter.take(key, _TRIED.capacity, _TRIED.refill_per_second)
        return allowed


@asynccontextmanager
async def promo_attempt(guard: PromoGuard | None, cart_id: str, code: str) -> AsyncIterator[None]:
    """Around looking up and checking ``code`` for a cart: 429 ``rate_limited`` first when the
    cart or the caller's IP has tried too many codes that do not exist. The attempt is charged
    only when it raises ``invalid_promo_code`` (reason ``unknown``) for a code this cart had not
    tried yet."""
    if guard is None:
        yield
        return
    await guard.take(cart_id)
    counted = False
    try:
        yield
    except Problem as problem:
        if problem.code == "invalid_promo_code" and problem.extra.get("reason") == "unknown":
            counted = await guard.first_failure(cart_id, code)
        raise
    finally:
        await guard.settle(cart_id, counted=counted)
