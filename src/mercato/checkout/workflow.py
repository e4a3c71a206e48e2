"""The checkout: from a customer's cart to a paid order, as a durable workflow.

**Prepare** (in the first transaction, with the caller authenticated inside it): the cart is
not empty; every line is on sale at the price the shopper saw (else 409 ``price_changed``
listing the lines, or ``variant_unavailable``); the shipping method exists for the country;
the promo code is usable. The cart is priced (:func:`mercato.checkout.pricing.price_cart`).
A problem here writes nothing, but a replay of a key that already has a run gets that run's
answer (a completed checkout emptied the cart it would now complain about).

1. **reserve**, in that same transaction, with the run's row: hold the stock
   (``inventory.reserve``, owner = the checkout) and take the promo use.
   *Undo:* release the stock, give the promo use back.
   A refusal here (``out_of_stock``, the promo used up meanwhile) stays the answer to the key.
2. **authorize**, outside any transaction: ``payments.authorize`` with the key
   ``checkout:<checkout id>`` (the payments module records the intent before calling the
   processor, and its answer after). A decline undoes step 1; a processor that does not answer
   leaves the run waiting (the shopper is told ``payment_timeout``) until the worker, or a
   replay of the key, asks the processor again. A resumed run (after a crash, a wait or a
   takeover) never has the card token: it looks the intent up instead. No intent: the shopper
   never reached the payment, the checkout is undone (``checkout_interrupted``). Authorized:
   go on (the shopper asked for the order and is charged; voiding would only make them start
   again). Refused: that decline.
   *Undo:* void the authorization (key ``checkout-void:<checkout id>``), if there is one.
3. **place_order**, one transaction: create the order (``orders.create_order``), make the
   promo use final, empty the cart, and sell the reserved stock — last, because a stock row
   stays locked from its ``UPDATE`` to the commit, and on a popular variant that lock is what
   every checkout queues for. A reservation that expired meanwhile is taken again here, or the
   checkout is undone with ``out_of_stock``.

The 201 body is stored on the run: the same user, key and body get it again; another body is a
422 ``idempotency_conflict``; a replay while the first request still runs waits a little, then
answers 409 ``checkout_in_progress``. ``GET /api/checkout/{id}`` reads the run.

A checkout's id (``chk_…``) is its run's id; it owns the stock, the promo use and the payment,
and is the order's ``checkout_id``.

**Guests** check out the same way, with their cart named by its signed token and an e-mail
address (normalised as accounts' are): the order has that e-mail and no customer. A guest's
idempotency keys are scoped to the cart, as a customer's are to the account; the e-mail is part
of the body a replay must repeat. A promo code's per-customer limit counts a guest by its
e-mail.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import BaseModel, PrivateAttr

from mercato import workflows
from mercato.cart import service as cart_service
from mercato.checkout.pricing import PricedCart
from mercato.checkout.promos import (
    PromoGuard,
    PromoInfo,
    commit_promo_use,
    get_promo,
    invalid_promo,
    release_promo_use,
    take_promo_use,
)
from mercato.checkout.quote import (
    CartItem,
    cart_empty,
    cart_items,
    check_purchasable,
    load_pricing_context,
    price_items,
    priced_from_minor,
    priced_to_json,
    priced_to_minor,
)
from mercato.checkout.setup_cache import PricingSetupCache, pricing_setup_cache
from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.identity.service import UserInfo
from mercato.ids import new_id
from mercato.inventory import service as inventory
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem, validation_problem
from mercato.runtime import Runtime
from mercato.workflows import RetryLater, Step, StepContext, Workflow

log = logging.getLogger("mercato.checkout")

MAX_KEY_LENGTH = 255
# Visible ASCII, spaces inside: a UUID or any key the client makes up.
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
_KEY = re.compile(KEY_PATTERN)


# --------------------------------------------------------------------------------------------
# What the shopper asks for, and what the run keeps


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """What ``POST /api/checkout`` carries (the cart comes from the customer, or from a guest's
    token; ``email`` is a guest's address)."""

    shipping_address: Mapping[str, str | None]
    shipping_method: str
    payment_token: str
    promo_code: str | None = None
    email: str | None = None

    def canonical(self) -> dict[str, Any]:
        address = {k: v for k, v in sorted(self.shipping_address.items()) if v is not None}
        promo = self.promo_code.strip().upper() if self.promo_code else None
        canonical: dict[str, Any] = {
            "shipping_address": address,
            "shipping_method": self.shipping_method.strip().lower(),
            "payment_token": self.payment_token,
            "promo_code": promo or None,
        }
        if self.email is not None:
            # Only a guest's: customers' bodies (and so their stored fingerprints) are unchanged.
            canonical["email"] = self.email
        return canonical

    def fingerprint(self) -> str:
        """SHA-256 of the canonical body. The cart is not part of it: a successful checkout
        empties the cart, and a replay must still find its order."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class Payment(BaseModel):
    intent_id: str | None = None
    card_brand: str | None = None
    card_last4: str | None = None


class CheckoutState(BaseModel):
    checkout_id: str
    user_id: str | None
    """None for a guest."""
    email: str
    cart_id: str
    currency: str
    shipping_address: dict[str, str]
    shipping_method: str
    promo_id: str | None = None
    promo_code: str | None = None
    items: list[dict[str, Any]]
    """The cart's lines as ordered (:meth:`CartItem.to_json`)."""
    pricing: dict[str, Any]
    """The priced cart in minor units (:func:`priced_to_minor`)."""
    order_id: str
    payment: Payment | None = None
    order_status: str | None = None
    _answer: dict[str, Any] | None = PrivateAttr(default=None)
    """The 201 body, built before the stock is sold (never stored with the state)."""

    @property
    def lines(self) -> list[tuple[str, int]]:
        """Every line's (variant, units), the house's and the sellers'."""
        return [(str(i["variant_id"]), int(i["quantity"])) for i in self.items]

    @property
    def house_lines(self) -> list[tuple[str, int]]:
        """The shop's own lines: held in its pooled warehouses."""
        return [
            (str(i["variant_id"]), int(i["quantity"]))
            for i in self.items
            if i.get("seller_id") is None
        ]

    @property
    def seller_lines(self) -> dict[str, list[tuple[str, int]]]:
        """Marketplace sellers' lines by the seller's warehouse: held there only."""
        found: dict[str, list[tuple[str, int]]] = {}
        for i in self.items:
            if i.get("seller_id") is not None:
                where = str(i.get("warehouse_id") or "")
                found.setdefault(where, []).append((str(i["variant_id"]), int(i["quantity"])))
        return found

    @property
    def country(self) -> str:
        return self.shipping_address["country"]

    @property
    def total(self) -> int:
        return int(self.pricing["total"])

    @property
    def promo_customer(self) -> str:
        """Who a promo code's per-customer limit counts: the customer, or a guest's e-mail."""
        if self.user_id is not None:
            return self.user_id
        return "guest:" + hashlib.sha256(self.email.encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Buyer:
    """Whose cart is checked out: a customer's (``cart_id`` None: the customer's cart) or a
    guest's (no ``user_id``, the cart its token names, the e-mail it gave)."""

    user_id: str | None
    email: str
    cart_id: str | None = None

    @classmethod
    def customer(cls, user: UserInfo) -> Buyer:
        return cls(user.id, user.email)

    @property
    def key_scope(self) -> str:
        """What an idempotency key is unique within: the account, or the guest's cart."""
        return self.user_id if self.user_id is not None else f"guest:{self.cart_id}"


# --------------------------------------------------------------------------------------------
# Problems


def check_idempotency_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise Problem(
            400,
            "idempotency_key_required",
            "POST /api/checkout needs an Idempotency-Key header (any unique string per order "
            "attempt, e.g. a UUID)",
            title="Idempotency key required",
        )
    if len(key) > MAX_KEY_LENGTH or not _KEY.fullmatch(key):
        raise Problem(
            400,
            "invalid_idempotency_key",
            f"The Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters",
            title="Invalid idempotency key",
        )
    return key


def interrupted() -> Problem:
    return Problem(
        409,
        "checkout_interrupted",
        "The checkout was interrupted before payment and has been cancelled; nothing was "
        "charged. Please check out again.",
        title="Checkout interrupted",
    )


def in_progress(run_id: str) -> Problem:
    return Problem(
        409,
        "checkout_in_progress",
        "A checkout with this Idempotency-Key is still running; retry shortly",
        title="Checkout in progress",
        headers={"Retry-After": "1"},
        checkout_id=run_id,
    )


def payment_key(checkout_id: str) -> str:
    return f"checkout:{checkout_id}"


def void_key(checkout_id: str) -> str:
    return f"checkout-void:{checkout_id}"


# --------------------------------------------------------------------------------------------
# Prepare: the cart checked and priced, nothing written


async def prepare(
    uow: UnitOfWork,
    buyer: Buyer,
    request: CheckoutRequest,
    checkout_id: str,
    memo: dict[str, Any],
    cache: PricingSetupCache | None = None,
    promo_guard: PromoGuard | None = None,
) -> CheckoutState:
    address = dict(request.shipping_address)
    cart = await cart_service.get_cart_for(uow, buyer.user_id, buyer.cart_id)
    if cart is None or not cart.lines:
        raise cart_empty()
    items = await cart_items(uow, cart.lines, str(address.get("country") or "") or None)
    check_purchasable(items, cart.currency)
    context = await load_pricing_context(
        uow,
        country=str(address["country"]),
        region=address.get("region"),
        shipping_method=request.shipping_method,
        promo_code=request.promo_code,
        currency=cart.currency,
        cache=cache,
        promo_guard=promo_guard,
        cart_id=cart.id,
    )
    # Pricing refuses what cannot be priced (a promo's minimum, a parcel too heavy) before
    # anything is written.
    priced = price_items(items, context, cart.currency)
    # The live request keeps what it read, so its steps need not read or rebuild it again.
    memo.update(priced=priced, promo=context.promo)
    canonical = request.canonical()
    return CheckoutState(
        checkout_id=checkout_id,
        user_id=buyer.user_id,
        email=buyer.email,
        cart_id=cart.id,
        currency=cart.currency,
        shipping_address={
            **canonical["shipping_address"],
            "country": context.destination.country,
        },
        shipping_method=context.method.code,
        promo_id=context.promo.id if context.promo is not None else None,
        promo_code=context.promo.code if context.promo is not None else None,
        items=[i.to_json() for i in items],
        pricing=priced_to_minor(priced),
        order_id=new_id("ord"),
    )


# --------------------------------------------------------------------------------------------
# Step 1: hold the stock and the promo use


async def reserve(ctx: StepContext, state: CheckoutState) -> None:
    first = not ctx.resuming  # the run's row is being inserted in this very transaction
    # The run's row first: the stock rows locked below stay locked until the commit.
    await ctx.record_progress()
    await inventory.reserve(
        ctx.uow,
        state.checkout_id,
        state.house_lines,
        country=state.country,
        ttl_seconds=ctx.runtime.settings.reservation_ttl_seconds,
        check_catalog=False,  # checked moments ago, in this transaction
        new_owner=first,
        named=state.seller_lines,
    )
    if state.promo_id is not None:
        promo: PromoInfo | None = ctx.memo.get("promo")
        if promo is None or promo.id != state.promo_id:
            promo = await get_promo(ctx.uow, state.promo_id)
        if promo is None:
            code = state.promo_code or ""
            raise invalid_promo(code, "unknown", "The promo code was removed")
        await take_promo_use(
            ctx.uow,
            promo,
            user_id=state.promo_customer,
            checkout_id=state.checkout_id,
            new_checkout=first,
        )


async def release(ctx: StepContext, state: CheckoutState) -> None:
    await inventory.release(ctx.uow, state.checkout_id, reason="checkout failed")
    if state.promo_id is not None:
        await release_promo_use(ctx.uow, state.checkout_id)


# --------------------------------------------------------------------------------------------
# Step 2: authorize the payment


async def authorize(ctx: StepContext, state: CheckoutState) -> None:
    if state.total == 0:
        state.payment = Payment()  # nothing to charge (a full discount, free shipping)
        return
    provider = payments.get_provider(ctx.runtime)
    if ctx.resuming:
        state.payment = await _payment_made_before(ctx, state)
        return
    outcome = await payments.authorize(
        ctx.db,
        provider,
        owner=state.checkout_id,
        amount=state.total,
        currency=state.currency,
        token=ctx.memo["token"],
        idempotency_key=payment_key(state.checkout_id),
    )
    state.payment = _authorized(ctx, outcome)


async def _payment_made_before(ctx: StepContext, state: CheckoutState) -> Payment:
    """What became of the payment of a run this process did not start (the token is gone)."""
    async with ctx.db.transaction() as uow:
        intent = await payments.find_intent_by_owner(uow, state.checkout_id)
    if intent is None:
        raise interrupted()
    outcome = await payments.recover(ctx.db, payments.get_provider(ctx.runtime), intent.id)
    if not outcome.pending and outcome.status != "authorized":
        outcome = replace(outcome, ok=False, code=outcome.code or intent.failure_code)
    return _authorized(ctx, outcome)


def _authorized(ctx: StepContext, outcome: payments.PaymentOutcome) -> Payment:
    if outcome.pending:
        # The processor's answer is unknown for now: ask again later, by the same key.
        delay = workflows.retry_delay(ctx.attempt)
        raise RetryLater(payments.payment_problem(outcome), delay=delay)
    if not outcome.ok:
        raise payments.payment_problem(outcome)
    return Payment(
        intent_id=outcome.intent_id, card_brand=outcome.card_brand, card_last4=outcome.card_last4
    )


async def void(ctx: StepContext, state: CheckoutState) -> None:
    await void_payment(ctx, state.payment, state.checkout_id)


async def void_payment(ctx: StepContext, payment: Payment | None, owner: str) -> None:
    """Undo the authorization made for ``owner`` (a checkout or a flash purchase), found by its
    owner when the run never recorded it; retried later while the processor has no answer."""
    intent_id = payment.intent_id if payment is not None else None
    if intent_id is None:
        # A crash may have come between the processor's answer and our record of it.
        async with ctx.db.transaction() as uow:
            intent = await payments.find_intent_by_owner(uow, owner)
        if intent is None:
            return
        intent_id = intent.id
    provider = payments.get_provider(ctx.runtime)
    outcome = await payments.void(ctx.db, provider, intent_id, void_key(owner))
    if outcome.pending:
        delay = workflows.retry_delay(ctx.attempt)
        raise RetryLater(payments.payment_problem(outcome), delay=delay)


# --------------------------------------------------------------------------------------------
# Step 3: place the order


async def place_order(ctx: StepContext, state: CheckoutState) -> None:
    uow = ctx.uow
    priced: PricedCart = ctx.memo.get("priced") or priced_from_minor(state.pricing)
    order = await orders.create_order(uow, _order_draft(state, priced))
    state.order_status = order.status
    # Built now rather than at the run's end: the stock rows sold below stay locked until the
    # commit, and the run's end comes after the sale.
    state._answer = _answer_of(state, priced)
    if state.promo_id is not None:
        await commit_promo_use(uow, state.checkout_id)
    await cart_service.clear_cart(uow, state.cart_id)
    cache = cart_service.cache_for(ctx.runtime)
    if cache is not None:
        # Before answering, once committed: the shopper's next look at the cart finds it empty.
        uow.after_commit(partial(cache.delete, state.cart_id))
    # The run's progress, then the stock last: see the module docstring.
    await ctx.record_progress()
    sold = await inventory.commit(uow, state.checkout_id)
    missing = _missing(state.lines, sold)
    if missing and state.seller_lines:
        # A seller's units come from its warehouse only: the expired hold is taken again as
        # a whole (or the checkout is undone with out_of_stock).
        await _hold_all_again(ctx, state)
    elif missing:
        await _sell_again(ctx, state, missing)


def _missing(
    lines: Sequence[tuple[str, int]], sold: Sequence[inventory.ReservationInfo]
) -> list[tuple[str, int]]:
    wanted = inventory.sum_lines(lines)
    got = inventory.sum_lines((r.variant_id, r.quantity) for r in sold)
    return [(v, q - got.get(v, 0)) for v, q in wanted.items() if q > got.get(v, 0)]


async def _sell_again(
    ctx: StepContext, state: CheckoutState, missing: Sequence[tuple[str, int]]
) -> None:
    """Part of the reservation expired before the order: hold and sell those units now."""
    log.warning("checkout %s: the reservation expired before the order", state.checkout_id)
    # The run is still this runner's: recording the progress just now would have failed had
    # recovery taken it over. Out of stock by now: the checkout is undone (the authorization
    # voided, the rest given back).
    await inventory.reserve(
        ctx.uow,
        state.checkout_id,
        missing,
        country=state.country,
        ttl_seconds=ctx.runtime.settings.reservation_ttl_seconds,
    )
    await inventory.commit(ctx.uow, state.checkout_id)


async def _hold_all_again(ctx: StepContext, state: CheckoutState) -> None:
    log.warning("checkout %s: the reservation expired before the order", state.checkout_id)
    await inventory.release(ctx.uow, state.checkout_id, reason="held again")
    await inventory.reserve(
        ctx.uow,
        state.checkout_id,
        state.house_lines,
        country=state.country,
        ttl_seconds=ctx.runtime.settings.reservation_ttl_seconds,
        named=state.seller_lines,
    )
    await inventory.commit(ctx.uow, state.checkout_id)


def _order_draft(state: CheckoutState, priced: PricedCart) -> orders.OrderDraft:
    return order_draft(
        order_id=state.order_id,
        checkout_id=state.checkout_id,
        user_id=state.user_id,
        email=state.email,
        items=state.items,
        priced=priced,
        shipping_address=state.shipping_address,
        payment=state.payment,
    )


def order_draft(
    *,
    order_id: str,
    checkout_id: str,
    user_id: str | None,
    email: str,
    items: Sequence[Mapping[str, Any]],
    priced: PricedCart,
    shipping_address: Mapping[str, Any],
    payment: Payment | None,
) -> orders.OrderDraft:
    """The order a priced cart makes: its lines as priced, with each item's product, SKU,
    title and options as the cart held them (the regular checkout's and a flash purchase's)."""
    lines = []
    # Priced lines come in the items' order (two lines may share a variant: two sellers').
    for line, item in zip(priced.lines, items, strict=True):
        seller = item.get("seller_id") or orders.HOUSE_SELLER
        lines.append(
            orders.OrderLineDraft(
                variant_id=line.variant_id,
                product_id=str(item["product_id"]),
                sku=str(item["sku"]),
                title=str(item["title"]),
                options={str(k): str(v) for k, v in dict(item["options"]).items()},
                quantity=line.quantity,
                unit_price=line.unit_price,
                subtotal=line.subtotal,
                discount=line.discount,
                tax=line.tax,
                total=line.total,
                seller_id=seller,
            )
        )
    handling = {
        item.get("seller_id") or orders.HOUSE_SELLER: int(item.get("handling_days") or 1)
        for item in items
    }
    parts = tuple(
        orders.OrderPartDraft(
            seller_id=p.seller_id or orders.HOUSE_SELLER,
            # As the order's shipping: with its tax when prices exclude tax.
            shipping=p.shipping if priced.prices_include_tax else p.shipping + p.shipping_tax,
            shipping_tax=p.shipping_tax,
            handling_days=handling.get(p.seller_id or orders.HOUSE_SELLER, 1),
        )
        for p in priced.parts
    )
    return orders.OrderDraft(
        id=order_id,
        checkout_id=checkout_id,
        user_id=user_id,
        email=email,
        currency=priced.currency,
        lines=tuple(lines),
        subtotal=priced.subtotal,
        shipping=priced.shipping_total,
        discount=priced.discount,
        tax=priced.tax,
        total=priced.total,
        shipping_address=dict(shipping_address),
        shipping_method=priced.shipping_method,
        promo_code=priced.promo_code,
        payment_intent_id=(payment or Payment()).intent_id or "",
        parts=parts,
    )


# --------------------------------------------------------------------------------------------
# The answer, and the workflow


def answer(state: CheckoutState) -> dict[str, Any]:
    """The 201 body of a placed order (stored on the run for replays)."""
    if state._answer is not None:
        return state._answer
    return _answer_of(state, priced_from_minor(state.pricing))


def _answer_of(state: CheckoutState, priced: PricedCart) -> dict[str, Any]:
    assert state.order_status is not None, "answered before the order was placed"
    items = [CartItem.from_json(x) for x in state.items]
    payment = state.payment or Payment()
    return {
        "order_id": state.order_id,
        "checkout_id": state.checkout_id,
        "status": state.order_status,
        **priced_to_json(priced, items),
        "shipping_address": dict(state.shipping_address),
        "payment": {
            "intent_id": payment.intent_id,
            "status": "authorized" if payment.intent_id else "not_required",
            "card_brand": payment.card_brand,
            "card_last4": payment.card_last4,
        },
    }


CHECKOUT: Workflow[CheckoutState] = Workflow(
    name="checkout",
    state=CheckoutState,
    steps=(
        Step("reserve", reserve, release),
        Step(
            "authorize",
            authorize,
            void,
            transactional=False,
            checkpoint=False,  # recorded with the order: one transaction less per checkout
            compensate_transactional=False,
        ),
        Step("place_order", place_order),
    ),
    result=answer,
    remember_refusals=True,
    in_progress=in_progress,
    id_prefix="chk",
)


# --------------------------------------------------------------------------------------------
# Entry points


Authenticate = Callable[[UnitOfWork], Awaitable[UserInfo]]
"""Resolves the caller in the checkout's first transaction, or raises the problem to answer."""


async def checkout(
    runtime: Runtime,
    user: UserInfo,
    idempotency_key: str | None,
    request: CheckoutRequest,
    *,
    ip: str = "unknown",
) -> dict[str, Any]:
    """Run (or replay) the checkout of ``user``'s cart; the 201 body, or a Problem raised.
    ``ip`` is the caller's address: its promo codes count against the guessing allowance of
    that address and of the cart (:class:`~mercato.checkout.promos.PromoGuard`)."""
    check_idempotency_key(idempotency_key)
    return await _start(runtime, Buyer.customer(user), idempotency_key, request, ip)


def guest_email(email: str | None) -> str:
    """A guest's e-mail as orders keep it (normalised like an account's); 422 naming ``email``
    when it is missing or not an address."""
    normalized = identity.normalize_email(email or "")
    problem = "is required" if not normalized else identity.email_problem(normalized)
    if problem is not None:
        raise validation_problem("email", problem)
    return normalized


async def checkout_guest(
    runtime: Runtime,
    cart_id: str | None,
    idempotency_key: str | None,
    request: CheckoutRequest,
    *,
    ip: str = "unknown",
) -> dict[str, Any]:
    """:func:`checkout` of a guest's cart (``cart_id``, from its signed token) with the e-mail
    in ``request``: the order has that e-mail and no customer. The same guarantees as a
    customer's checkout; a bad e-mail is a 422 before anything is written, and no cart (no
    token) a 422 ``cart_empty``."""
    email = guest_email(request.email)
    check_idempotency_key(idempotency_key)
    if cart_id is None:
        raise cart_empty()
    guest = Buyer(None, email, cart_id)
    return await _start(runtime, guest, idempotency_key, replace(request, email=email), ip)


async def checkout_as(
    runtime: Runtime,
    authenticate: Authenticate,
    idempotency_key: str | None,
    request: CheckoutRequest,
    *,
    ip: str = "unknown",
) -> dict[str, Any]:
    """:func:`checkout` for a caller not authenticated yet: ``authenticate`` runs first in the
    checkout's first transaction (one transaction fewer than authenticating on its own) and
    raises its problem for a bad credential before the key is looked at."""
    return await _start(runtime, authenticate, idempotency_key, request, ip)


async def _start(
    runtime: Runtime,
    caller: Buyer | Authenticate,
    idempotency_key: str | None,
    request: CheckoutRequest,
    ip: str,
) -> dict[str, Any]:
    cache = pricing_setup_cache(runtime.extras)
    guard = PromoGuard.for_caller(runtime, ip) if request.promo_code else None
    memo: dict[str, Any] = {"token": request.payment_token}
    found: dict[str, Buyer] = {}

    async def key(uow: UnitOfWork) -> str:
        buyer = caller if isinstance(caller, Buyer) else Buyer.customer(await caller(uow))
        found["buyer"] = buyer
        return f"{buyer.key_scope}:{check_idempotency_key(idempotency_key)}"

    async def start(uow: UnitOfWork, run_id: str) -> CheckoutState:
        return await prepare(uow, found["buyer"], request, run_id, memo, cache, guard)

    return await workflows.start(
        runtime,
        CHECKOUT,
        key=key,
        prepare=start,
        fingerprint=request.fingerprint(),
        memo=memo,
    )


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True, slots=True)
class CheckoutStatus:
    """A checkout as its customer (and an operator) sees it."""

    id: str
    user_id: str | None
    status: str
    step: str
    order_id: str | None
    error: dict[str, Any] | None
    attempts: int
    created_at: datetime
    updated_at: datetime


async def checkout_status(
    uow: UnitOfWork, checkout_id: str, user_id: str | None = None
) -> CheckoutStatus | None:
    """Where a checkout stands; None when there is none (or it is not ``user_id``'s)."""
    run = await workflows.get_run(uow, checkout_id)
    if run is None or run.workflow != CHECKOUT.name:
        return None
    owner = run.state.get("user_id")
    if user_id is not None and owner != user_id:
        return None
    return CheckoutStatus(
        id=checkout_id,
        user_id=owner,
        status=run.status,
        step=run.step,
        order_id=run.state.get("order_id") if run.status == "completed" else None,
        error=run.error,
        attempts=run.attempts,
        created_at=run.created_at,
        updated_at=run.updated_at,
    )


async def count_by_status(uow: UnitOfWork) -> dict[str, int]:
    """{status: count} of checkout runs (for checks and the benchmark)."""
    return await workflows.count_by_status(uow, CHECKOUT.name)
