"""The checkout saga: from a customer's cart to a paid order, step by step, on a persisted row.

Three steps, each ending with the saga row where the step left it, so a crash between two
steps leaves a row that says exactly what is done. Every step is as few statements as it can
be, in as few short transactions: a checkout is CPU-bound on the statements it runs.

1. **start** → ``priced``, ONE transaction: validate (the cart is not empty, every line is on
   sale at the price the shopper saw, else 409 ``price_changed`` listing the lines or
   ``variant_unavailable``; the shipping method exists for the country; the promo code is
   usable), price the cart (:func:`~mercato.checkout.pricing.price_cart`), insert the row with
   the priced cart (the unique ``(user_id, idempotency_key)`` decides which of several identical
   requests runs the saga; the others wait for its outcome), hold the stock
   (``inventory.reserve``, owner = saga id, with a TTL) and take the promo use. Bad input
   writes nothing. ``out_of_stock`` (or a promo used up) rolls all of it back, and the row is
   then written as ``failed`` with that answer, so a replay of the key gets it too. A crash
   inside the transaction leaves nothing at all.
2. **authorize**: ``payments.authorize`` with the key ``checkout:<saga id>``, outside any
   transaction. The payments module records the intent (owner = saga id) before it calls the
   processor and the answer after, and that intent is this step's record: the saga row stays
   ``priced`` (step ``authorize_pending`` while the processor's answer is unknown). A decline
   compensates.
3. **complete** → ``completed``, ONE transaction: the row moves first (a request whose saga
   was taken over by recovery stops there), then the order is created, the promo use made
   final, the cart cleared and, last so that the stock rows stay locked for the shortest time,
   the reservation committed. (If the reservation expired meanwhile, it is taken again in the
   same transaction, or the saga compensates.)

Rows written before these steps were merged (statuses ``started``, ``reserved``; ``completed``
with the cart not yet cleared) are still finished by recovery, and recovery itself records a
payment it resolved as ``authorized`` before completing.

**Compensation** (a failure after step 1): the row goes to ``compensating`` with the problem to
answer, the authorization is voided, then the reservation released, the promo use given back
and the row set to ``failed`` in one transaction. Each of these is idempotent, so an
interrupted compensation is simply run again.

**Replays**: the same user and key with the same body return the stored answer (201 with the
same order, or the stored problem); with another body, 422 ``idempotency_conflict``. While the
first request is still running, a replay polls the row for a bounded time, then answers 409
``checkout_in_progress``.

**Recovery** (:func:`recover_stuck_sagas`, the worker job ``checkout.recover``): a saga not
updated for a while is finished or undone from its row alone. A ``priced`` saga without a
payment intent is compensated (the shopper was never charged; the stock and the promo use go
back). With an intent, the payment is resolved with ``payments.recover``: an approved payment
**completes the order** (the shopper asked for it, was charged, and the stock is held; voiding
would only make them start again), anything else compensates. Every transition is a
conditional ``UPDATE … WHERE status = …``, so a live request and a recovery run can never both
act on one step; a request that finds its saga undone under it voids its own authorization.

**Crash injection** for tests: put boundary names from :data:`BOUNDARIES` into
:data:`CRASH_POINTS` and the saga raises :class:`SimulatedCrash` there, exactly as if the process
had died between two transactions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Insert, Row, Update, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from mercato.cart import service as cart_service
from mercato.checkout import service
from mercato.checkout.models import sagas
from mercato.checkout.pricing import PricedCart
from mercato.checkout.service import CartItem, PricingContext
from mercato.db import Database, utcnow
from mercato.identity.service import UserInfo
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem
from mercato.runtime import Runtime

log = logging.getLogger("mercato.checkout")

MAX_KEY_LENGTH = 255
REPLAY_WAIT_SECONDS = 15.0
"""How long a replay waits for the first request with its key to finish before answering 409
``checkout_in_progress``."""
STUCK_AFTER_SECONDS = 120.0
"""A saga whose row has not moved for this long is taken over by recovery."""
LEASE_SECONDS = 60.0
"""How long a recovery run owns a saga it took over."""

IN_PROGRESS = ("started", "reserved", "priced", "authorized", "compensating")

BOUNDARIES = ("after_start", "after_authorize", "after_order")
"""Where :data:`CRASH_POINTS` can stop the saga: after each step (the crashes inside the
payment step are the payments module's, tested there)."""

CRASH_POINTS: set[str] = set()
BOUNDARY_HOOKS: list[Callable[[str], Awaitable[None]]] = []
"""Tests only: coroutines run at every boundary (e.g. a recovery run racing the request)."""


class SimulatedCrash(RuntimeError):
    """Raised at a boundary named in :data:`CRASH_POINTS` (tests only)."""


async def _boundary(name: str) -> None:
    for hook in BOUNDARY_HOOKS:
        await hook(name)
    if name in CRASH_POINTS:
        raise SimulatedCrash(name)


class _Moved(Exception):
    """The saga row was moved by someone else (a recovery run) under this request."""


class _ReservationLost(Exception):
    """Part of the reservation expired before the order was created."""


T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Requests and state


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What ``POST /api/checkout`` carries (the cart comes from the customer)."""

    shipping_address: Mapping[str, str | None]
    shipping_method: str
    payment_token: str
    promo_code: str | None = None

    def canonical(self) -> dict[str, Any]:
        address = {k: v for k, v in sorted(self.shipping_address.items()) if v is not None}
        promo = self.promo_code.strip().upper() if self.promo_code else None
        return {
            "shipping_address": address,
            "shipping_method": self.shipping_method.strip().lower(),
            "payment_token": self.payment_token,
            "promo_code": promo or None,
        }

    def fingerprint(self) -> str:
        """SHA-256 of the canonical body. The cart is not part of it: a successful checkout
        empties the cart, and a replay must still find its order."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(slots=True)
class SagaState:
    id: str
    user_id: str
    idempotency_key: str
    request_fingerprint: str
    status: str
    step: str
    cart_id: str
    currency: str
    request: dict[str, Any]
    items: list[CartItem]
    pricing: dict[str, Any] | None
    promo_id: str | None
    order_id: str
    payment_intent_id: str | None
    error: dict[str, Any] | None
    response: dict[str, Any] | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    # In memory only (the live request): the pricing inputs and the payment token.
    context: PricingContext | None = field(default=None, repr=False)
    payment_token: str | None = field(default=None, repr=False)
    priced: PricedCart | None = field(default=None, repr=False)

    @property
    def lines(self) -> list[tuple[str, int]]:
        return [(i.variant_id, i.quantity) for i in self.items]

    @property
    def country(self) -> str:
        return str(self.request["shipping_address"]["country"])


def _state(row: Row[Any]) -> SagaState:
    return SagaState(
        id=row.id,
        user_id=row.user_id,
        idempotency_key=row.idempotency_key,
        request_fingerprint=row.request_fingerprint,
        status=row.status,
        step=row.step,
        cart_id=row.cart_id,
        currency=row.currency,
        request=dict(row.request),
        items=[CartItem.from_json(x) for x in row.cart_snapshot],
        pricing=dict(row.pricing) if row.pricing is not None else None,
        promo_id=row.promo_id,
        order_id=row.order_id,
        payment_intent_id=row.payment_intent_id,
        error=dict(row.error) if row.error is not None else None,
        response=dict(row.response) if row.response is not None else None,
        attempts=row.attempts,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@dataclass(frozen=True, slots=True)
class SagaInfo:
    """A saga as the API and operators see it."""

    id: str
    user_id: str
    status: str
    step: str
    order_id: str | None
    payment_intent_id: str | None
    error: dict[str, Any] | None
    attempts: int
    created_at: datetime
    updated_at: datetime


def _info(st: SagaState) -> SagaInfo:
    return SagaInfo(
        id=st.id,
        user_id=st.user_id,
        status=st.status,
        step=st.step,
        order_id=st.order_id if st.status == "completed" else None,
        payment_intent_id=st.payment_intent_id,
        error=st.error,
        attempts=st.attempts,
        created_at=st.created_at,
        updated_at=st.updated_at,
    )


# --------------------------------------------------------------------------------------------
# Problems


def problem_to_json(problem: Problem) -> dict[str, Any]:
    body = problem.body()
    if problem.headers:
        body["_headers"] = dict(problem.headers)
    return body


def problem_from_json(data: Mapping[str, Any]) -> Problem:
    body = dict(data)
    status = int(body.pop("status"))
    code = str(body.pop("code"))
    detail = str(body.pop("detail"))
    title = body.pop("title", None)
    headers = body.pop("_headers", None)
    body.pop("type", None)
    body.pop("instance", None)
    return Problem(status, code, detail, title=title, headers=headers, **body)


def idempotency_conflict() -> Problem:
    return Problem(
        422,
        "idempotency_conflict",
        "This Idempotency-Key was already used for a different checkout request",
        title="Idempotency conflict",
    )


def _in_progress(saga_id: str) -> Problem:
    return Problem(
        409,
        "checkout_in_progress",
        "A checkout with this Idempotency-Key is still running; retry shortly",
        title="Checkout in progress",
        headers={"Retry-After": "1"},
        checkout_id=saga_id,
    )


def _interrupted() -> Problem:
    return Problem(
        409,
        "checkout_interrupted",
        "The checkout was interrupted before payment and has been cancelled; nothing was "
        "charged. Please check out again.",
        title="Checkout interrupted",
    )


def check_idempotency_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise Problem(
            400,
            "idempotency_key_required",
            "POST /api/checkout needs an Idempotency-Key header (any unique string per order "
            "attempt, e.g. a UUID)",
            title="Idempotency key required",
        )
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(
            400,
            "invalid_idempotency_key",
            f"The Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters",
            title="Invalid idempotency key",
        )
    return key


# --------------------------------------------------------------------------------------------
# Row access


async def _load(executor: AsyncConnection | AsyncSession, saga_id: str) -> SagaState | None:
    row = (await executor.execute(select(sagas).where(sagas.c.id == saga_id))).first()
    return _state(row) if row is not None else None


async def _find_by_key(conn: AsyncConnection, user_id: str, key: str) -> SagaState | None:
    row = (
        await conn.execute(
            select(sagas).where(sagas.c.user_id == user_id, sagas.c.idempotency_key == key)
        )
    ).first()
    return _state(row) if row is not None else None


async def _reload(db: Database, saga_id: str) -> SagaState:
    async with db.connect() as conn:
        st = await _load(conn, saga_id)
    assert st is not None
    return st


async def get_saga(executor: AsyncConnection | AsyncSession, saga_id: str) -> SagaInfo | None:
    st = await _load(executor, saga_id)
    return _info(st) if st is not None else None


async def _move(
    conn: AsyncConnection,
    st: SagaState,
    from_status: str | Sequence[str],
    to_status: str,
    step: str,
    **values: Any,
) -> None:
    """The conditional transition: raises :class:`_Moved` when the row is not where the
    caller believed (the transaction is then rolled back with everything else in it)."""
    allowed = [from_status] if isinstance(from_status, str) else list(from_status)
    now = utcnow()
    params = {
        **values,
        "b_id": st.id,
        "b_from": allowed,
        "status": to_status,
        "step": step,
        "updated_at": now,
    }
    done = await conn.execute(_move_statement(tuple(sorted(values))), params)
    if done.rowcount != 1:
        raise _Moved(st.id)
    st.status, st.step, st.updated_at = to_status, step, now
    for name, value in values.items():
        setattr(st, name, value)


_MOVES: dict[tuple[str, ...], Update] = {}


def _move_statement(columns: tuple[str, ...]) -> Update:
    """The conditional transition setting ``columns`` besides status, step and updated_at,
    built once per shape: a checkout runs few statements, and building them is a good part of
    their cost."""
    statement = _MOVES.get(columns)
    if statement is None:
        statement = (
            update(sagas)
            .where(
                sagas.c.id == bindparam("b_id"),
                sagas.c.status.in_(bindparam("b_from", expanding=True)),
            )
            .values({c: bindparam(c) for c in ("status", "step", "updated_at", *columns)})
        )
        _MOVES[columns] = statement
    return statement


async def _transaction(db: Database, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
    """One short transaction, retried when PostgreSQL reports a deadlock."""
    return await inventory.in_transaction(db, work)


# --------------------------------------------------------------------------------------------
# The entry point


Authenticate = Callable[[AsyncSession], Awaitable[UserInfo]]
"""Resolves the caller with the checkout's own session, or raises the problem to answer."""


async def checkout(
    runtime: Runtime, user: UserInfo, idempotency_key: str | None, request: CheckoutRequest
) -> dict[str, Any]:
    """Run (or replay) the checkout of ``user``'s cart; the 201 body, or a Problem raised."""
    check_idempotency_key(idempotency_key)
    return await _checkout(runtime, user, idempotency_key, request)


async def checkout_as(
    runtime: Runtime,
    authenticate: Authenticate,
    idempotency_key: str | None,
    request: CheckoutRequest,
) -> dict[str, Any]:
    """:func:`checkout` for a caller not authenticated yet: ``authenticate`` runs first in the
    checkout's first transaction (one transaction fewer than authenticating on its own) and
    raises its problem for a bad credential before the key is looked at."""
    return await _checkout(runtime, authenticate, idempotency_key, request)


async def _checkout(
    runtime: Runtime,
    caller: UserInfo | Authenticate,
    idempotency_key: str | None,
    request: CheckoutRequest,
) -> dict[str, Any]:
    fingerprint = request.fingerprint()
    try:
        st = await _start(runtime, caller, idempotency_key, fingerprint, request)
    except _KeyUsed as used:
        return await _replay(runtime, used.state, fingerprint)
    await _boundary("after_start")
    try:
        return await _drive(runtime, st)
    except _Moved:
        return await _replay(runtime, await _reload(runtime.db, st.id), fingerprint)


class _KeyUsed(Exception):
    """The user's key already names a saga: the request is a replay of it."""

    def __init__(self, state: SagaState) -> None:
        super().__init__(state.id)
        self.state = state


class _NotHeld(Exception):
    """The stock or the promo use could not be held: step 1 was rolled back."""

    def __init__(self, state: SagaState, problem: Problem) -> None:
        super().__init__(problem.code)
        self.state = state
        self.problem = problem


async def _start(
    runtime: Runtime,
    caller: UserInfo | Authenticate,
    idempotency_key: str | None,
    fingerprint: str,
    request: CheckoutRequest,
) -> SagaState:
    """Step 1 in one transaction: validate and price the cart, claim the key with the priced
    row, hold the stock and take the promo use. Raises :class:`_KeyUsed` for a replay."""
    settings = runtime.settings
    cache = service.pricing_setup_cache(runtime.extras)

    async def work(conn: AsyncConnection) -> SagaState:
        session = conn
        user = caller if isinstance(caller, UserInfo) else await caller(session)
        key = check_idempotency_key(idempotency_key)
        return await steps(conn, session, user, key)

    async def steps(
        conn: AsyncConnection, session: AsyncSession, user: UserInfo, key: str
    ) -> SagaState:
        try:
            st = await _validate(conn, session, user, key, fingerprint, request, cache)
        except Problem:
            # A replay finds its saga even when the cart has changed since (e.g. emptied by
            # the order it placed); only a new key gets the validation problem.
            existing = await _find_by_key(conn, user.id, key)
            if existing is not None:
                raise _KeyUsed(existing) from None
            raise
        if not await _insert(conn, st):
            raise _KeyUsed(await _claimed(conn, user.id, key))
        try:
            await _hold(conn, st, settings.reservation_ttl_seconds)
        except Problem as problem:
            raise _NotHeld(st, problem) from problem
        return st

    try:
        return await _transaction(runtime.db, work)
    except _NotHeld as refused:
        # Nothing is held (the step was rolled back, row included): record the answer so that
        # a replay of the key gets it too.
        await _record_refusal(runtime.db, refused.state, refused.problem)
        raise refused.problem from None


async def _claimed(conn: AsyncConnection, user_id: str, key: str) -> SagaState:
    found = await _find_by_key(conn, user_id, key)
    assert found is not None, "the key's row was committed before the insert gave way"
    return found


async def _validate(
    conn: AsyncConnection,
    session: AsyncSession,
    user: UserInfo,
    key: str,
    fingerprint: str,
    request: CheckoutRequest,
    cache: service.PricingSetupCache | None = None,
) -> SagaState:
    """Read-only: the cart as it will be ordered, priced, as a saga not yet written."""
    address = dict(request.shipping_address)
    cart = await cart_service.get_cart_for(session, user.id, None)
    if cart is None or not cart.lines:
        raise service.cart_empty()
    items = await service.cart_items(session, cart.lines)
    service.check_purchasable(items, cart.currency)
    context = await service.load_pricing_context(
        conn,
        country=str(address["country"]),
        region=address.get("region"),
        shipping_method=request.shipping_method,
        promo_code=request.promo_code,
        currency=cart.currency,
        cache=cache,
    )
    # Pricing refuses what cannot be priced (a promo's minimum, a parcel too heavy) before
    # anything is written.
    priced = service.price_items(items, context, cart.currency)
    now = utcnow()
    canonical = request.canonical()
    stored_request = {
        "shipping_address": {
            **canonical["shipping_address"],
            "country": context.destination.country,
        },
        "shipping_method": context.method.code,
        "promo_code": context.promo.code if context.promo is not None else None,
        "email": user.email,
    }
    return SagaState(
        id=new_id("chk"),
        user_id=user.id,
        idempotency_key=key,
        request_fingerprint=fingerprint,
        status="priced",
        step="authorize",
        cart_id=cart.id,
        currency=cart.currency,
        request=stored_request,
        items=items,
        pricing=service.priced_to_minor(priced),
        promo_id=context.promo.id if context.promo is not None else None,
        order_id=new_id("ord"),
        payment_intent_id=None,
        error=None,
        response=None,
        attempts=1,
        created_at=now,
        updated_at=now,
        context=context,
        payment_token=request.payment_token,
        priced=priced,
    )


async def _insert(conn: AsyncConnection, st: SagaState) -> bool:
    """Claim the idempotency key with the row as ``st`` has it; False when another request
    holds the key already (PostgreSQL makes this insert wait until that one commits)."""
    row = {
        "id": st.id,
        "user_id": st.user_id,
        "idempotency_key": st.idempotency_key,
        "request_fingerprint": st.request_fingerprint,
        "status": st.status,
        "step": st.step,
        "cart_id": st.cart_id,
        "currency": st.currency,
        "request": st.request,
        "cart_snapshot": [i.to_json() for i in st.items],
        "pricing": st.pricing,
        "promo_id": st.promo_id,
        "order_id": st.order_id,
        "payment_intent_id": st.payment_intent_id,
        "error": st.error,
        "response": st.response,
        "attempts": st.attempts,
        "locked_until": None,
        "created_at": st.created_at,
        "updated_at": st.updated_at,
    }
    done = await conn.execute(_claim_statement(conn.dialect.name), row)
    return bool(done.rowcount == 1)


_CLAIMS: dict[str, Insert] = {}


def _claim_statement(dialect: str) -> Insert:
    statement = _CLAIMS.get(dialect)
    if statement is None:
        ins = postgresql.insert(sagas) if dialect == "postgresql" else sqlite.insert(sagas)
        statement = ins.on_conflict_do_nothing(
            index_elements=[sagas.c.user_id, sagas.c.idempotency_key]
        )
        _CLAIMS[dialect] = statement
    return statement


async def _hold(conn: AsyncConnection, st: SagaState, ttl_seconds: int) -> None:
    """The stock held for the saga and its promo use taken (inside step 1's transaction)."""
    await inventory.reserve(
        conn,
        st.id,
        st.lines,
        country=st.country,
        ttl_seconds=ttl_seconds,
        check_catalog=False,  # checked moments ago, in this transaction
        new_owner=True,  # the saga row was inserted moments ago, in this transaction
    )
    if st.promo_id is not None:
        promo = st.context.promo if st.context is not None else None
        if promo is None or promo.id != st.promo_id:
            promo = await service.get_promo(conn, st.promo_id)
        if promo is None:
            raise service.invalid_promo(
                str(st.request.get("promo_code")), "unknown", "The promo code was removed"
            )
        await service.take_promo_use(conn, promo, user_id=st.user_id, saga_id=st.id)


async def _record_refusal(db: Database, st: SagaState, problem: Problem) -> None:
    """Write the saga as ``failed`` with ``problem``; :class:`_KeyUsed` when another request
    claimed the key meanwhile (its outcome is then the answer)."""
    st.status, st.step, st.error = "failed", "failed", problem_to_json(problem)
    st.updated_at = utcnow()

    async def work(conn: AsyncConnection) -> None:
        if not await _insert(conn, st):
            raise _KeyUsed(await _claimed(conn, st.user_id, st.idempotency_key))

    await _transaction(db, work)


async def _drive(runtime: Runtime, st: SagaState) -> dict[str, Any]:
    """Run the remaining steps of a live request's saga."""
    payment = await _authorize(runtime, st)
    await _boundary("after_authorize")
    try:
        response = await _complete(runtime, st, payment)
    except _Moved:
        if payment.intent_id is not None:
            current = await _reload(runtime.db, st.id)
            if current.status in ("compensating", "failed"):
                # Recovery undid this saga while the processor was answering: undo the
                # authorization too (recovery voids only what it found).
                await _void(runtime, st.id, payment.intent_id)
        raise
    await _boundary("after_order")
    return response


# --------------------------------------------------------------------------------------------
# Steps 2 and 3


@dataclass(frozen=True, slots=True)
class _Payment:
    intent_id: str | None
    card_brand: str | None
    card_last4: str | None


async def _authorize(runtime: Runtime, st: SagaState) -> _Payment:
    """Step 2. Nothing is written to the saga row on success: the payments module recorded
    the intent (owner = saga id) before calling the processor and the answer after, which is
    what recovery reads; step 3 stores the intent id with the order."""
    db = runtime.db
    assert st.priced is not None
    priced = st.priced
    if priced.total == 0:
        return _Payment(None, None, None)  # nothing to charge (a full discount, free shipping)
    assert st.payment_token is not None
    try:
        outcome = await payments.authorize(
            db,
            payments.get_provider(runtime),
            owner=st.id,
            amount=priced.total,
            currency=priced.currency,
            token=st.payment_token,
            idempotency_key=payment_key(st.id),
        )
    except Problem as problem:
        # Refused before reaching the processor (e.g. a malformed token): nothing charged.
        await _compensate(runtime, st, problem)
        raise
    if outcome.pending:
        # The processor's answer is unknown for now: leave the saga to recovery, which resolves
        # the payment by its key and then completes or compensates.
        async def note(conn: AsyncConnection) -> None:
            await _move(
                conn,
                st,
                "priced",
                "priced",
                "authorize_pending",
                payment_intent_id=outcome.intent_id,
            )

        await _transaction(db, note)
        raise payments.payment_problem(outcome)
    if not outcome.ok:
        declined = payments.payment_problem(outcome)
        await _compensate(runtime, st, declined, intent_id=outcome.intent_id)
        raise declined
    st.payment_intent_id = outcome.intent_id  # written by step 3 (or voided by compensation)
    return _Payment(outcome.intent_id, outcome.card_brand, outcome.card_last4)


def payment_key(saga_id: str) -> str:
    return f"checkout:{saga_id}"


def _order_draft(st: SagaState, priced: PricedCart, intent_id: str | None) -> orders.OrderDraft:
    by_variant = {i.variant_id: i for i in st.items}
    lines = []
    for line in priced.lines:
        item = by_variant[line.variant_id]
        lines.append(
            orders.OrderLineDraft(
                variant_id=line.variant_id,
                product_id=item.product_id,
                sku=item.sku,
                title=item.title,
                options=dict(item.options),
                quantity=line.quantity,
                unit_price=line.unit_price,
                subtotal=line.subtotal,
                discount=line.discount,
                tax=line.tax,
                total=line.total,
            )
        )
    address = {str(k): str(v) for k, v in st.request["shipping_address"].items() if v is not None}
    return orders.OrderDraft(
        id=st.order_id,
        checkout_id=st.id,
        user_id=st.user_id,
        email=str(st.request.get("email", "")),
        currency=priced.currency,
        lines=tuple(lines),
        subtotal=priced.subtotal,
        shipping=priced.shipping_total,
        discount=priced.discount,
        tax=priced.tax,
        total=priced.total,
        shipping_address=address,
        shipping_method=priced.shipping_method,
        promo_code=priced.promo_code,
        payment_intent_id=intent_id or "",
    )


def _response(
    st: SagaState, priced: PricedCart, order_status: str, payment: _Payment
) -> dict[str, Any]:
    body = service.priced_to_json(priced, st.items)
    return {
        "order_id": st.order_id,
        "checkout_id": st.id,
        "status": order_status,
        **body,
        "shipping_address": dict(st.request["shipping_address"]),
        "payment": {
            "intent_id": payment.intent_id,
            "status": "authorized" if payment.intent_id else "not_required",
            "card_brand": payment.card_brand,
            "card_last4": payment.card_last4,
        },
    }


async def _complete(runtime: Runtime, st: SagaState, payment: _Payment) -> dict[str, Any]:
    """Step 3, in one transaction: the saga row moved on (first: a run that lost the row to
    recovery stops before doing anything), the order created, the promo use made final, the
    cart cleared and the stock sold."""
    assert st.pricing is not None
    priced = st.priced or service.priced_from_minor(st.pricing)
    wanted = inventory.sum_lines(st.lines)
    settings = runtime.settings
    # A new order is ``paid`` (``orders.create_order``); checked below.
    response = _response(st, priced, "paid", payment)

    async def work(conn: AsyncConnection, *, take_again: bool) -> dict[str, Any]:
        before = (st.status, st.step, st.updated_at, st.response, st.payment_intent_id)
        await _move(
            conn,
            st,
            ("priced", "authorized"),
            "completed",
            "done",
            response=response,
            payment_intent_id=payment.intent_id,
        )
        try:
            return await _place_order(conn, take_again=take_again)
        except BaseException:
            # Rolled back with the transaction: so is the row's move.
            st.status, st.step, st.updated_at, st.response, st.payment_intent_id = before
            raise

    async def _place_order(conn: AsyncConnection, *, take_again: bool) -> dict[str, Any]:
        if take_again:
            await inventory.release(conn, st.id, reason="reservation renewed at order")
            await inventory.reserve(
                conn,
                st.id,
                st.lines,
                country=st.country,
                ttl_seconds=settings.reservation_ttl_seconds,
            )
        order = await orders.create_order(conn, _order_draft(st, priced, payment.intent_id))
        if st.promo_id is not None:
            await service.commit_promo_use(conn, st.id)
        await _empty_cart(conn, st.cart_id)
        # The stock last: its rows stay locked from this UPDATE to the commit, and on a popular
        # variant that lock is what every checkout queues for. A lost reservation rolls all of
        # this back.
        committed = await inventory.commit(conn, st.id)
        if inventory.sum_lines((r.variant_id, r.quantity) for r in committed) != wanted:
            raise _ReservationLost(st.id)
        if order.status == "paid":
            return response
        # Not a new order after all (it cannot be: the order and this row move together).
        answer = _response(st, priced, order.status, payment)
        await conn.execute(update(sagas).where(sagas.c.id == st.id).values(response=answer))
        st.response = answer
        return answer

    try:
        answer = await _transaction(runtime.db, lambda conn: work(conn, take_again=False))
    except _ReservationLost:
        log.warning("checkout %s: the reservation expired before the order; taking it again", st.id)
        try:
            answer = await _transaction(runtime.db, lambda conn: work(conn, take_again=True))
        except Problem as problem:  # out of stock by now: give the money back
            await _compensate(runtime, st, problem)
            raise
    await _forget_cached_cart(runtime, st.cart_id)
    return answer


async def _empty_cart(conn: AsyncConnection, cart_id: str) -> None:
    await cart_service.clear_cart(conn, cart_id)


async def _forget_cached_cart(runtime: Runtime, cart_id: str) -> None:
    """Drop the cleared cart's cached copy (after the commit, so no reader re-caches the old
    lines; the cache checks the cart's version anyway, so this is tidiness, not correctness)."""
    cache = cart_service.cache_for(runtime)
    if cache is not None:
        await cache.delete(cart_id)


async def _clear_cart(runtime: Runtime, st: SagaState) -> None:
    """Clear the cart of a saga completed before step 3 cleared it in the same transaction."""
    async with runtime.db.session() as session:
        await cart_service.clear_cart(session, st.cart_id, cache=cart_service.cache_for(runtime))
        await session.execute(
            update(sagas)
            .where(sagas.c.id == st.id, sagas.c.status == "completed")
            .values(step="done", updated_at=utcnow())
        )
    st.step = "done"


# --------------------------------------------------------------------------------------------
# Compensation


async def _void(runtime: Runtime, saga_id: str, intent_id: str | None) -> bool:
    """Void the saga's authorization if there is one; False while its outcome is unknown."""
    db = runtime.db
    if intent_id is None:
        async with db.connect() as conn:
            intent = await payments.find_intent_by_owner(conn, saga_id)
        if intent is None:
            return True
        intent_id = intent.id
    outcome = await payments.void(
        db, payments.get_provider(runtime), intent_id, f"checkout-void:{saga_id}"
    )
    return not outcome.pending


async def _compensate(
    runtime: Runtime, st: SagaState, problem: Problem | None, *, intent_id: str | None = None
) -> bool:
    """Undo a saga; True when it is ``failed`` (fully compensated) afterwards. ``problem`` is
    the answer to store (``None``: keep the one stored when compensation began)."""
    db = runtime.db
    if st.status != "compensating":
        error = problem_to_json(problem) if problem is not None else st.error

        async def begin(conn: AsyncConnection) -> None:
            await _move(
                conn,
                st,
                ("started", "reserved", "priced", "authorized"),
                "compensating",
                "void",
                error=error,
            )

        await _transaction(db, begin)
    if not await _void(runtime, st.id, intent_id or st.payment_intent_id):
        log.warning("checkout %s: void not settled yet; compensation continues later", st.id)
        return False

    async def finish(conn: AsyncConnection) -> None:
        await inventory.release(conn, st.id, reason="checkout failed")
        await service.release_promo_use(conn, st.id)
        await _move(conn, st, "compensating", "failed", "failed")

    await _transaction(db, finish)
    return True


# --------------------------------------------------------------------------------------------
# Replays


async def _replay(runtime: Runtime, st: SagaState, fingerprint: str) -> dict[str, Any]:
    if st.request_fingerprint != fingerprint:
        raise idempotency_conflict()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + REPLAY_WAIT_SECONDS
    delay = 0.02
    recovered = False
    while True:
        if st.status == "completed":
            assert st.response is not None
            return dict(st.response)
        if st.status == "failed":
            assert st.error is not None
            raise problem_from_json(st.error)
        if not recovered and utcnow() - st.updated_at > timedelta(seconds=STUCK_AFTER_SECONDS):
            # The request that ran it is gone: finish or undo it now rather than wait.
            await recover_saga(runtime, st.id)
            recovered = True
        elif loop.time() >= deadline:
            raise _in_progress(st.id)
        else:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        st = await _reload(runtime.db, st.id)


# --------------------------------------------------------------------------------------------
# Recovery


async def recover_saga(runtime: Runtime, saga_id: str) -> str:
    """Finish or undo one saga from its row; returns its status afterwards."""
    db = runtime.db
    st = await _reload(db, saga_id)
    try:
        if st.status in ("started", "reserved"):
            await _compensate(runtime, st, _interrupted())
        elif st.status == "priced":
            await _recover_priced(runtime, st)
        elif st.status == "authorized":
            await _finish_authorized(runtime, st)
        elif st.status == "compensating":
            await _compensate(runtime, st, None)
        elif st.status == "completed" and st.step != "done":
            await _clear_cart(runtime, st)
    except _Moved:
        log.info("checkout %s: moved on by another run during recovery", saga_id)
    except Problem as problem:
        log.info("checkout %s: recovery ended with %s", saga_id, problem.code)
    return (await _reload(db, saga_id)).status


async def _recover_priced(runtime: Runtime, st: SagaState) -> None:
    db = runtime.db
    async with db.connect() as conn:
        intent = await payments.find_intent_by_owner(conn, st.id)
    if intent is None:
        await _compensate(runtime, st, _interrupted())
        return
    outcome = await payments.recover(db, payments.get_provider(runtime), intent.id)
    if outcome.pending:
        log.info("checkout %s: payment %s still unresolved", st.id, intent.id)
        return
    if outcome.status != "authorized":
        code = outcome.code or intent.failure_code
        refused = payments.payment_problem(replace(outcome, code=code))
        await _compensate(runtime, st, refused, intent_id=intent.id)
        return

    async def record(conn: AsyncConnection) -> None:
        await _move(conn, st, "priced", "authorized", "order", payment_intent_id=intent.id)

    await _transaction(db, record)
    await _finish_authorized(runtime, st)


async def _finish_authorized(runtime: Runtime, st: SagaState) -> None:
    payment = _Payment(None, None, None)
    if st.payment_intent_id is not None:
        async with runtime.db.connect() as conn:
            intent = await payments.get_intent(conn, st.payment_intent_id)
        if intent is not None:
            payment = _Payment(intent.id, intent.card_brand, intent.card_last4)
    await _complete(runtime, st, payment)


async def recover_stuck_sagas(
    runtime: Runtime,
    *,
    older_than: float = STUCK_AFTER_SECONDS,
    limit: int = 100,
    now: datetime | None = None,
) -> int:
    """Take over sagas whose row has not moved for ``older_than`` seconds and finish or undo
    each (see the module docstring). Returns how many were handled."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=older_than)
    s = sagas.c
    query = (
        select(s.id)
        .where(
            or_(s.status.in_(IN_PROGRESS), (s.status == "completed") & (s.step != "done")),
            s.updated_at <= cutoff,
            or_(s.locked_until.is_(None), s.locked_until <= now),
        )
        .order_by(s.updated_at)
        .limit(limit)
    )
    async with runtime.db.connect() as conn:
        ids = list((await conn.execute(query)).scalars())
    handled = 0
    for saga_id in ids:
        if not await _claim(runtime.db, saga_id, now):
            continue
        try:
            status = await recover_saga(runtime, saga_id)
        except Exception:
            log.exception("checkout %s: recovery failed; it will be retried", saga_id)
            continue
        log.info("checkout %s: recovered to %s", saga_id, status)
        handled += 1
    return handled


async def _claim(db: Database, saga_id: str, now: datetime) -> bool:
    s = sagas.c
    async with db.connect() as conn:
        done = await conn.execute(
            update(sagas)
            .where(s.id == saga_id, or_(s.locked_until.is_(None), s.locked_until <= now))
            .values(
                locked_until=now + timedelta(seconds=LEASE_SECONDS),
                attempts=s.attempts + 1,
            )
        )
        return bool(done.rowcount == 1)


# --------------------------------------------------------------------------------------------
# Reading for the API and checks


async def saga_for_user(
    executor: AsyncConnection | AsyncSession, saga_id: str, user_id: str
) -> SagaInfo | None:
    st = await _load(executor, saga_id)
    if st is None or st.user_id != user_id:
        return None
    return _info(st)


async def count_by_status(executor: AsyncConnection | AsyncSession) -> dict[str, int]:
    rows = await executor.execute(select(sagas.c.status, func.count()).group_by(sagas.c.status))
    return {status: int(n) for status, n in rows}
