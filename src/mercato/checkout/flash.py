"""The flash-sale checkout: a queue of purchases, and workers that place them in batches.

``POST /api/flash-sales/{sale_id}/checkout`` checks the buyer's admission token at once (403
``invalid_admission`` / ``admission_expired``, 409 ``not_admitted`` straight away), prices the
units at the sale's price for the address (tax and shipping as the regular checkout reckons
them), and **enqueues** the purchase: its run's row is inserted ``waiting``, in the transaction
that moved the buyer's place to ``checking_out``, and the answer is a 202 with a purchase id to
poll. The database sees one short transaction per buyer at the door, whatever the crowd does.

The worker's ``flashsale.checkout`` job (woken by the enqueue: ``NOTIFY`` on PostgreSQL, in
process otherwise) takes purchases in batches of up to :data:`BATCH`
(:func:`mercato.workflows.drive_batch`): each buyer's payment is authorized concurrently,
outside any transaction, by an idempotency key of its own; then every order of the batch, the
units sold out of the sale's hold, and every run's progress are written in **one** transaction
(group commit), so the write rate is bounded by the batches, not by the crowd. A purchase whose
step refuses (the variant's share sold out) is rolled back to its savepoint and handled alone.

The purchase, a durable workflow (one run per buyer and ``Idempotency-Key``):

1. **take_unit**, in the enqueue's transaction: ``flashsale.take_admitted_unit`` (the place is
   ``checking_out``: its units no longer run out under the buyer), the units priced.
   *Undo:* ``flashsale.return_unit``: the units go back to the gate for the next buyer.
2. **authorize**, outside any transaction: ``payments.authorize`` with the key
   ``flashsale:<purchase id>`` (the same intent whoever asks again). The card token is kept on
   the run only until then (the worker, not the request, asks the processor) and cleared once
   the processor has answered. A decline undoes step 1; no answer leaves the run waiting for
   the worker to ask again. *Undo:* void the authorization.
3. **place_order**, batched: ``orders.create_order`` (status ``paid``; ``OrderPlaced``) and
   ``flashsale.mark_purchased`` (the units sold out of the sale's inventory hold), with the
   run's progress.

A crash anywhere leaves each run where its row says: a purchase nobody claimed within
:data:`PICKUP_SECONDS`, or whose worker died, is finished or undone alone by the
``workflows.recover`` job. The buyer's page polls ``GET …/purchases/{id}``: ``queued``,
``processing``, then ``completed`` with the order, or ``failed`` with the problem.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel

from mercato import workflows
from mercato.catalog import service as catalog
from mercato.checkout.pricing import PricedCart
from mercato.checkout.quote import (
    CartItem,
    Quote,
    ShippingOption,
    load_pricing_context,
    price_items,
    priced_from_minor,
    priced_to_minor,
    shipping_options,
)
from mercato.checkout.setup_cache import pricing_setup_cache
from mercato.checkout.shipping import shipping_methods_for
from mercato.checkout.workflow import (
    Payment,
    check_idempotency_key,
    interrupted,
    order_draft,
    void_payment,
)
from mercato.db import Database, UnitOfWork
from mercato.flashsale import service as flashsale
from mercato.identity.service import UserInfo
from mercato.ids import new_id
from mercato.orders import service as orders
from mercato.payments import service as payments
from mercato.problems import Problem, not_found, validation_problem
from mercato.runtime import Runtime
from mercato.worker import poke, signal
from mercato.workflows import RetryLater, Step, StepContext, Workflow

CHANNEL = "mercato_flashsale_checkout"
"""The channel an enqueue signals and the worker's ``flashsale.checkout`` job listens on."""
BATCH = 50
"""Purchases per group commit."""
LANES = 2
"""Batches one worker runs at once on PostgreSQL (one authorizes while another commits)."""
AUTHORIZING = 8
"""Authorizations one batch asks for at once: each takes the payments module's connections,
so a batch's authorizations never starve the other lane's group commit of the pool."""
DRAIN_SECONDS = 2.0
"""How long one run of the job drains the queue before letting the worker's other jobs run."""
PICKUP_SECONDS = 30.0
"""A queued purchase no worker claimed by then is driven alone by ``workflows.recover``."""


@dataclass(frozen=True, slots=True)
class PurchaseRequest:
    """What ``POST /api/flash-sales/{sale_id}/checkout`` carries."""

    admission_token: str
    shipping_address: Mapping[str, str | None]
    payment_token: str
    shipping_method: str = "standard"
    variant_id: str | None = None

    def fingerprint(self, sale_id: str) -> str:
        body = {
            "sale_id": sale_id,
            "admission_token": self.admission_token,
            "shipping_address": {
                k: v for k, v in sorted(self.shipping_address.items()) if v is not None
            },
            "payment_token": self.payment_token,
            "shipping_method": self.shipping_method.strip().lower(),
            "variant_id": self.variant_id,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


class PurchaseState(BaseModel):
    purchase_id: str
    sale_id: str
    user_id: str
    email: str
    admission_token: str
    variant_id: str | None
    shipping_address: dict[str, str]
    shipping_method: str
    payment_token: str | None
    """Kept only until the processor has answered (the worker authorizes, not the request)."""
    currency: str = ""
    items: list[dict[str, Any]] = []
    pricing: dict[str, Any] = {}
    order_id: str
    payment: Payment | None = None
    order_status: str | None = None

    @property
    def lines(self) -> list[tuple[str, int]]:
        return [(str(i["variant_id"]), int(i["quantity"])) for i in self.items]

    @property
    def total(self) -> int:
        return int(self.pricing["total"])


# --------------------------------------------------------------------------------------------
# Problems


def idempotency_conflict() -> Problem:
    return Problem(
        409,
        "idempotency_conflict",
        "This Idempotency-Key was already used for a different purchase",
        title="Idempotency conflict",
    )


def invalid_admission() -> Problem:
    return Problem(
        403,
        "invalid_admission",
        "This admission token is not valid for this sale",
        title="Invalid admission",
    )


def no_such_purchase(purchase_id: str) -> Problem:
    return not_found("Flash-sale purchase", purchase_id)


def payment_key(purchase_id: str) -> str:
    return f"flashsale:{purchase_id}"


def void_key(purchase_id: str) -> str:
    return f"flashsale-void:{purchase_id}"


# --------------------------------------------------------------------------------------------
# Step 1: the admitted units, priced


async def take_unit(ctx: StepContext, state: PurchaseState) -> None:
    uow = ctx.uow
    settings = ctx.runtime.settings
    units = await flashsale.take_admitted_unit(
        uow,
        settings.secret_key,
        state.admission_token,
        state.user_id,
        gate=flashsale.gate_for(ctx.runtime),
    )
    if units.sale_id != state.sale_id:
        raise invalid_admission()
    variant_id = await _variant_for(uow, units, state.variant_id)
    item = await _sale_item(uow, variant_id, units)
    address = state.shipping_address
    context = await load_pricing_context(
        uow,
        country=address["country"],
        region=address.get("region"),
        shipping_method=state.shipping_method,
        promo_code=None,
        currency=units.currency,
        cache=pricing_setup_cache(ctx.runtime.extras),
    )
    priced = price_items([item], context, units.currency)
    state.currency = units.currency
    state.items = [item.to_json()]
    state.pricing = priced_to_minor(priced)
    state.shipping_method = context.method.code
    state.shipping_address = {**address, "country": context.destination.country}


async def _variant_for(uow: UnitOfWork, units: flashsale.AdmittedUnits, wanted: str | None) -> str:
    """The variant asked for, else the sale's first with the buyer's units left."""
    if wanted is not None:
        if wanted not in units.variant_ids:
            raise validation_problem("variant_id", "is not in this sale", code="unknown_variant")
        return wanted
    sale = await flashsale.get_sale(uow, units.sale_id, variants=True)
    for variant in sale.variants:
        if variant.allocation - variant.sold >= units.units:
            return variant.variant_id
    return units.variant_ids[0]  # all sold: the order step says so


async def _sale_item(uow: UnitOfWork, variant_id: str, units: flashsale.AdmittedUnits) -> CartItem:
    found = (await catalog.get_variants(uow, [variant_id])).get(variant_id)
    if found is None:
        raise Problem(409, "variant_unavailable", f"{variant_id} is no longer sold")
    title = found.product_title
    if found.title and found.title != found.product_title:
        title = f"{found.product_title} ({found.title})"
    return CartItem(
        line_id=f"{units.sale_id}:{variant_id}",
        variant_id=variant_id,
        product_id=found.product_id,
        sku=found.sku,
        title=title,
        options=dict(found.options),
        quantity=units.units,
        unit_price=units.price,
        unit_price_seen=units.price,
        currency=units.currency,
        seen_currency=units.currency,
        tax_class=found.tax_class,
        weight_grams=found.weight_grams,
        active=True,
    )


async def give_unit_back(ctx: StepContext, state: PurchaseState) -> None:
    gate = flashsale.gate_for(ctx.runtime)
    await flashsale.return_unit(ctx.uow, gate, state.sale_id, state.user_id, reason="checkout")


# --------------------------------------------------------------------------------------------
# Step 2: the payment


async def authorize(ctx: StepContext, state: PurchaseState) -> None:
    if state.payment is not None:
        return
    if state.total == 0:
        state.payment = Payment()
        return
    provider = payments.get_provider(ctx.runtime)
    if state.payment_token is None:
        outcome = await _payment_made_before(ctx, state)
    else:
        outcome = await payments.authorize(
            ctx.db,
            provider,
            owner=state.purchase_id,
            amount=state.total,
            currency=state.currency,
            token=state.payment_token,
            idempotency_key=payment_key(state.purchase_id),
        )
    if outcome.pending:
        raise RetryLater(payments.payment_problem(outcome), workflows.retry_delay(ctx.attempt))
    state.payment_token = None  # the processor answered: the token is of no more use
    if not outcome.ok:
        raise payments.payment_problem(outcome)
    state.payment = Payment(
        intent_id=outcome.intent_id, card_brand=outcome.card_brand, card_last4=outcome.card_last4
    )


async def _payment_made_before(ctx: StepContext, state: PurchaseState) -> payments.PaymentOutcome:
    async with ctx.db.transaction() as uow:
        intent = await payments.find_intent_by_owner(uow, state.purchase_id)
    if intent is None:
        raise interrupted()
    outcome = await payments.recover(ctx.db, payments.get_provider(ctx.runtime), intent.id)
    if not outcome.pending and outcome.status != "authorized":
        return replace(outcome, ok=False, code=outcome.code or intent.failure_code)
    return outcome


async def void(ctx: StepContext, state: PurchaseState) -> None:
    await void_payment(ctx, state.payment, state.purchase_id)


# --------------------------------------------------------------------------------------------
# Step 3: the order (batched)


async def place_order(ctx: StepContext, state: PurchaseState) -> None:
    uow = ctx.uow
    order = await orders.create_order(uow, _order_draft(state))
    state.order_status = order.status
    gate = flashsale.gate_for(ctx.runtime)
    await flashsale.mark_purchased(
        uow, gate, state.sale_id, state.user_id, state.lines, reference=state.order_id
    )


def _order_draft(state: PurchaseState) -> orders.OrderDraft:
    return order_draft(
        order_id=state.order_id,
        checkout_id=state.purchase_id,
        user_id=state.user_id,
        email=state.email,
        items=state.items,
        priced=priced_from_minor(state.pricing),
        shipping_address=state.shipping_address,
        payment=state.payment,
    )


def _result(state: PurchaseState) -> dict[str, Any]:
    return {"purchase_id": state.purchase_id, "order_id": state.order_id}


PURCHASE: Workflow[PurchaseState] = Workflow(
    name="flashsale.purchase",
    state=PurchaseState,
    steps=(
        Step("take_unit", take_unit, give_unit_back),
        Step(
            "authorize",
            authorize,
            void,
            transactional=False,
            checkpoint=False,  # recorded with the order, in the batch's transaction
            compensate_transactional=False,
        ),
        Step("place_order", place_order),
    ),
    result=_result,
    lease_seconds=60.0,
    id_prefix="fsp",
)


# --------------------------------------------------------------------------------------------
# Entry points


@dataclass(frozen=True, slots=True)
class Enqueued:
    purchase_id: str
    sale_id: str

    def answer(self) -> dict[str, Any]:
        return {
            "purchase_id": self.purchase_id,
            "status": "queued",
            "poll": f"/api/flash-sales/{self.sale_id}/purchases/{self.purchase_id}",
        }


async def enqueue_purchase(
    runtime: Runtime,
    user: UserInfo,
    sale_id: str,
    idempotency_key: str | None,
    request: PurchaseRequest,
    *,
    ip: str = "unknown",
) -> Enqueued:
    """Check the admission and queue the purchase (see the module docstring). The same key and
    body answer the same purchase; another body under that key is a 409
    ``idempotency_conflict``. 403 ``invalid_admission``/``admission_expired``, 409
    ``not_admitted``/``sale_ended``, 422 naming the field, 429 ``rate_limited``."""
    key = check_idempotency_key(idempotency_key)
    await flashsale.keeper_for(runtime).throttle(user.id, ip)
    fingerprint = request.fingerprint(sale_id)

    async def prepare(uow: UnitOfWork, run_id: str) -> PurchaseState:
        return PurchaseState(
            purchase_id=run_id,
            sale_id=sale_id,
            user_id=user.id,
            email=user.email,
            admission_token=request.admission_token,
            variant_id=request.variant_id,
            shipping_address={k: v for k, v in request.shipping_address.items() if v is not None},
            shipping_method=request.shipping_method,
            payment_token=request.payment_token,
            order_id=new_id("ord"),
        )

    async def wake_workers(uow: UnitOfWork, _run_id: str) -> None:
        await signal(uow, CHANNEL)

    queued = await workflows.enqueue(
        runtime,
        PURCHASE,
        key=f"{sale_id}:{user.id}:{key}",
        prepare=prepare,
        fingerprint=fingerprint,
        pickup_seconds=PICKUP_SECONDS,
        also=wake_workers,
    )
    if queued.existing is not None and queued.existing.fingerprint != fingerprint:
        raise idempotency_conflict()
    return Enqueued(queued.run_id, sale_id)


@dataclass(frozen=True, slots=True)
class PurchaseStatus:
    purchase_id: str
    status: str  # queued | processing | completed | failed
    order_id: str | None
    problem: dict[str, str] | None


async def purchase_status(
    db: Database, sale_id: str, purchase_id: str, user_id: str
) -> PurchaseStatus:
    """Where the buyer's purchase stands; 404 for anyone else's (or another sale's). One read
    outside any transaction: the buyer's page asks every second or two while it is placed."""
    run = await workflows.read_run(db, purchase_id)
    if (
        run is None
        or run.workflow != PURCHASE.name
        or run.state.get("user_id") != user_id
        or run.state.get("sale_id") != sale_id
    ):
        raise no_such_purchase(purchase_id)
    problem = None
    if run.status == "completed":
        status = "completed"
    elif run.status == "failed":
        status = "failed"
        error = run.error or {}
        problem = {"code": str(error.get("code", "")), "detail": str(error.get("detail", ""))}
    elif run.status == "waiting" and run.attempts == 1:
        status = "queued"
    else:
        status = "processing"
    order_id = run.state.get("order_id") if status == "completed" else None
    return PurchaseStatus(purchase_id, status, order_id, problem)


@dataclass(frozen=True, slots=True)
class PurchaseQuote:
    """What the buyer's held units would cost delivered to a destination, and the shipping
    methods there with their prices (the checkout's page shows it; asking holds nothing)."""

    priced: PricedCart
    options: tuple[ShippingOption, ...]


async def quote_purchase(
    runtime: Runtime,
    uow: UnitOfWork,
    sale_id: str,
    units: int,
    *,
    country: str,
    region: str | None,
    shipping_method: str,
) -> PurchaseQuote:
    """Read-only: ``units`` of the sale priced as :func:`take_unit` will price them (the
    sale's price, the destination's tax and shipping), with ``shipping_method`` if it ships
    there, else the first that does. 404 for an unknown sale; 422 naming the field for a
    destination the shop does not ship to."""
    sale = await flashsale.get_sale(uow, sale_id, variants=True)
    held = flashsale.AdmittedUnits(
        sale_id=sale.id,
        customer_id="",
        units=units,
        price=sale.price,
        currency=sale.currency,
        variant_ids=tuple(v.variant_id for v in sale.variants),
        hold_expires_at=sale.ends_at,
    )
    item = await _sale_item(uow, await _variant_for(uow, held, None), held)
    methods = await shipping_methods_for(uow, country.strip().upper(), currency=sale.currency)
    codes = [m.code for m in methods]
    context = await load_pricing_context(
        uow,
        country=country,
        region=region,
        shipping_method=shipping_method if shipping_method in codes else (codes or ["standard"])[0],
        promo_code=None,
        currency=sale.currency,
        cache=pricing_setup_cache(runtime.extras),
    )
    priced = price_items([item], context, sale.currency)
    quote = Quote(priced, (item,), context.method, (), methods=tuple(methods))
    return PurchaseQuote(priced, tuple(shipping_options(methods, quote)))


async def drain_purchases(runtime: Runtime) -> int:
    """The worker's job: place queued purchases in batches until the queue is empty (or for
    :data:`DRAIN_SECONDS`, then again at once, so the worker's other jobs get their turn)."""
    lanes = 1 if runtime.db.is_sqlite else LANES
    deadline = time.monotonic() + DRAIN_SECONDS
    more = False

    async def lane() -> int:
        nonlocal more
        handled = 0
        while True:
            result = await workflows.drive_batch(runtime, PURCHASE, BATCH, concurrency=AUTHORIZING)
            handled += result.claimed
            if result.claimed < BATCH:
                return handled
            if time.monotonic() >= deadline:
                more = True
                return handled

    handled = sum(await asyncio.gather(*(lane() for _ in range(lanes))))
    if more:
        poke(CHANNEL)
    return handled
