"""The state machine as data: random sequences of transition attempts (Hypothesis).

The table alone never leads outside itself, and the service agrees with it step by step: an
allowed move succeeds and lands where the table says, any other is a 409 that changes nothing.
The services are async and live on the test's event loop while Hypothesis drives a synchronous
state machine, so the machine runs on a worker thread and hands each call to the loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mercato.db import Database
from mercato.orders import service
from mercato.orders.service import STATUSES, TRANSITIONS
from mercato.problems import Problem
from tests.orders.conftest import events_of, get, make_draft, place

T = TypeVar("T")


@given(st.lists(st.sampled_from(STATUSES), max_size=40))
def test_the_table_never_leaves_itself(attempts: list[str]) -> None:
    state = "paid"  # what every order is born as
    for wanted in attempts:
        if service.can_transition(state, wanted):
            state = wanted
        assert state in TRANSITIONS
        assert TRANSITIONS[state] <= set(STATUSES)
    assert service.allowed_from("cancelled") == service.CANCELLABLE
    assert {"cancelled"} == service.FINAL


def make_machine(loop: asyncio.AbstractEventLoop, db: Database) -> type[RuleBasedStateMachine]:
    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    async def attempt(order_id: str, to_status: str) -> service.OrderInfo | Problem:
        try:
            async with db.transaction() as conn:
                return await service.transition(conn, order_id, to_status, actor="hypothesis")
        except Problem as exc:
            return exc

    class OrderMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.order_id = ""
            self.state = "paid"
            self.moves = 0

        @initialize()
        def place_order(self) -> None:
            self.order_id = run(place(db, make_draft())).id

        @rule(to_status=st.sampled_from(STATUSES))
        def try_to_move(self, to_status: str) -> None:
            result = run(attempt(self.order_id, to_status))
            if to_status in TRANSITIONS[self.state]:
                assert isinstance(result, service.OrderInfo), result
                assert result.status == to_status
                self.state = to_status
                self.moves += 1
            else:
                assert isinstance(result, Problem)
                assert (result.status, result.code) == (409, "invalid_transition")
                assert (result.extra["from"], result.extra["to"]) == (self.state, to_status)

        @precondition(lambda self: self.state not in service.FINAL)
        @rule(data=st.data())
        def follow_an_allowed_edge(self, data: st.DataObject) -> None:
            # Walks deeper into the machine than uniformly random attempts would.
            self.try_to_move(data.draw(st.sampled_from(sorted(TRANSITIONS[self.state]))))

        @invariant()
        def stored_order_matches_the_model(self) -> None:
            if not self.order_id:
                return
            order = run(get(db, self.order_id))
            assert order.status == self.state
            assert order.version == 1 + self.moves
            chain = [h.to_status for h in order.history]
            assert chain[-1] == self.state
            for entry in order.history[1:]:
                assert entry.from_status is not None
                assert entry.to_status in TRANSITIONS[entry.from_status]
            changed = run(events_of(db, self.order_id, "OrderStatusChanged"))
            assert [p["to"] for _, p in changed] == chain

    return OrderMachine


async def test_random_transition_attempts_agree_with_the_table(db: Database) -> None:
    machine = make_machine(asyncio.get_running_loop(), db)
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
