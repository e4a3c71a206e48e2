"""Random sequences of create / approve / reject / edit / delete (Hypothesis stateful testing):
after every step each product's stored figures equal a brute-force recount of its approved
reviews, and a model of what each step should have done.

The services are async and live on the test's event loop; Hypothesis drives a synchronous
state machine, so the machine runs on a worker thread and hands each coroutine to the loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete

from mercato.db import Database
from mercato.identity import service as identity
from mercato.identity.service import UserInfo
from mercato.payments.sandbox import SandboxProvider
from mercato.problems import Problem
from mercato.reviews import service as reviews
from tests.reviews.conftest import Shopper, received, shopper, stocked_product, stored, truth

pytestmark = pytest.mark.usefixtures("warehouse")

T = TypeVar("T")
CUSTOMERS = 4
PRODUCTS = 2
# No burst or new-account flags here: every customer reviews every product in a second.
POLICY = reviews.AbusePolicy(burst_count=1000, extreme_count=1000)
# Text people type: control and invisible formatting characters are refused (tested apart).
typed = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))
texts = st.one_of(st.none(), st.text(typed, min_size=1, max_size=30).filter(str.strip))


@dataclass
class Modelled:
    review_id: str
    product: int
    rating: int
    body: str | None
    state: str


def make_machine(
    loop: asyncio.AbstractEventLoop, db: Database, users: list[UserInfo], products: list[str]
) -> type[RuleBasedStateMachine]:
    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    async def in_tx(fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with db.transaction() as uow:
            return await fn(uow, *args, **kwargs)

    async def wipe() -> None:
        async with db.transaction() as uow:
            await uow.execute(delete(reviews.REVIEWS))
            await uow.execute(delete(reviews.RATINGS))

    class ReviewMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.model: dict[tuple[int, int], Modelled] = {}  # (customer, product)

        @initialize()
        def start_clean(self) -> None:
            run(wipe())

        @rule(
            c=st.integers(0, CUSTOMERS - 1),
            p=st.integers(0, PRODUCTS - 1),
            stars=st.integers(1, 5),
            body=texts,
        )
        def create(self, c: int, p: int, stars: int, body: str | None) -> None:
            draft = reviews.ReviewDraft(rating=stars, body=body)
            try:
                made = run(
                    in_tx(
                        reviews.create_review, users[c], products[p], draft, ip=None, policy=POLICY
                    )
                )
            except Problem as exc:
                assert (c, p) in self.model and exc.code == "review_exists"
                return
            assert (c, p) not in self.model
            # Star-only reviews from verified buyers are auto-approved (the default).
            assert made.state == ("approved" if made.star_only else "pending")
            self.model[(c, p)] = Modelled(made.id, p, stars, made.body, made.state)

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data(), decision=st.sampled_from(["approve", "reject"]))
        def moderate(self, data: st.DataObject, decision: str) -> None:
            key = data.draw(st.sampled_from(sorted(self.model)))
            review = self.model[key]
            target = "approved" if decision == "approve" else "rejected"
            try:
                run(in_tx(reviews.moderate, review.review_id, decision, actor="test", reason="No"))
            except Problem as exc:
                assert review.state == target and exc.code == "invalid_transition"
                return
            review.state = target

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data(), stars=st.one_of(st.none(), st.integers(1, 5)), body=texts)
        def edit(self, data: st.DataObject, stars: int | None, body: str | None) -> None:
            key = data.draw(st.sampled_from(sorted(self.model)))
            review = self.model[key]
            changes = reviews.ReviewChanges(
                rating=stars if stars is not None else reviews.UNSET, body=body
            )
            after = run(
                in_tx(
                    reviews.edit_review,
                    users[key[0]],
                    review.review_id,
                    changes,
                    ip=None,
                    policy=POLICY,
                )
            )
            new_rating = stars if stars is not None else review.rating
            assert (after.rating, after.body) == (new_rating, after.body)
            if (new_rating, after.body) == (review.rating, review.body):
                assert after.state == review.state  # nothing changed: nothing to moderate
            else:
                assert after.state == ("approved" if after.body is None else "pending")
            review.rating, review.body, review.state = new_rating, after.body, after.state

        @precondition(lambda self: bool(self.model))
        @rule(data=st.data())
        def remove(self, data: st.DataObject) -> None:
            key = data.draw(st.sampled_from(sorted(self.model)))
            run(in_tx(reviews.delete_review, users[key[0]].id, self.model.pop(key).review_id))

        @invariant()
        def figures_equal_a_recount(self) -> None:
            for p, product_id in enumerate(products):
                figures = run(stored(db, product_id))
                assert figures == run(truth(db, product_id))
                approved = [
                    r.rating
                    for r in self.model.values()
                    if r.product == p and r.state == "approved"
                ]
                assert figures.count == len(approved)
                assert figures.total == sum(approved)

    return ReviewMachine


async def test_random_review_sequences_keep_the_figures_exact(
    app: FastAPI,
    client: httpx.AsyncClient,
    adb: Database,
    sandbox: SandboxProvider,
    staff: Shopper,
) -> None:
    products = [await stocked_product(adb, f"Kettle {n}") for n in range(PRODUCTS)]
    users: list[UserInfo] = []
    for n in range(CUSTOMERS):
        customer = await shopper(app, f"c{n}@example.com")
        for product in products:
            await received(client, adb, sandbox, customer, staff, product)
        async with adb.transaction() as uow:
            user = await identity.get_user(uow, customer.id)
        assert user is not None
        users.append(user)
    machine = make_machine(asyncio.get_running_loop(), adb, users, [p[0] for p in products])
    await asyncio.to_thread(
        run_state_machine_as_test,
        machine,
        settings=settings(
            max_examples=15,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )
