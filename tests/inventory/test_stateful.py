"""Random sequences of receive / reserve / commit / release / expire / adjust, checked against a
model and the ledger after every step (Hypothesis stateful testing).

The services are async and live on the test's event loop; Hypothesis drives a synchronous
state machine. The machine therefore runs on a worker thread and hands each coroutine to the
test loop with ``run_coroutine_threadsafe``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

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

from mercato.db import Database, utcnow
from mercato.inventory import service
from mercato.problems import Problem
from tests.inventory.conftest import WAREHOUSE_SPECS, Warehouses, new_variants

T = TypeVar("T")
CODES = [code for code, _, _ in WAREHOUSE_SPECS]
SHIPS_TO = {code: set(countries) for code, _, countries in WAREHOUSE_SPECS}


@dataclass
class Held:
    variant: str
    code: str
    quantity: int
    expires_at: datetime


@dataclass
class Model:
    on_hand: dict[tuple[str, str], int] = field(default_factory=dict)
    reserved: dict[tuple[str, str], int] = field(default_factory=dict)
    active: dict[str, list[Held]] = field(default_factory=dict)

    def free(self, variant: str, code: str) -> int:
        key = (variant, code)
        return self.on_hand.get(key, 0) - self.reserved.get(key, 0)

    def settle(self, owner: str, sold: bool) -> None:
        for h in self.active.pop(owner, []):
            key = (h.variant, h.code)
            self.reserved[key] -= h.quantity
            if sold:
                self.on_hand[key] -= h.quantity


def make_machine(loop: asyncio.AbstractEventLoop, db: Database) -> type[RuleBasedStateMachine]:
    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    async def in_tx(fn: Any, *args: Any, **kwargs: Any) -> Any:
        async with db.transaction() as conn:
            return await fn(conn, *args, **kwargs)

    class InventoryMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.model = Model()
            self.variants: list[str] = []
            self.clock = utcnow()
            self.owners = 0

        @initialize()
        def make_variants(self) -> None:
            self.variants = run(new_variants(db, 2))

        @rule(v=st.integers(0, 1), code=st.sampled_from(CODES), qty=st.integers(1, 20))
        def receive(self, v: int, code: str, qty: int) -> None:
            variant = self.variants[v]
            run(in_tx(service.receive, variant, code, qty))
            key = (variant, code)
            self.model.on_hand[key] = self.model.on_hand.get(key, 0) + qty
            self.model.reserved.setdefault(key, 0)

        @rule(
            v=st.integers(0, 1),
            code=st.sampled_from(CODES),
            delta=st.integers(-10, 10).filter(bool),
        )
        def adjust(self, v: int, code: str, delta: int) -> None:
            variant = self.variants[v]
            key = (variant, code)
            allowed = delta > 0 or self.model.free(variant, code) >= -delta
            try:
                run(in_tx(service.adjust, variant, code, delta, "stock count"))
            except Problem as exc:
                assert not allowed, exc.body()
                assert exc.code == "insufficient_stock"
                assert exc.extra["available"] == self.model.free(variant, code)
                return
            assert allowed
            self.model.on_hand[key] = self.model.on_hand.get(key, 0) + delta
            self.model.reserved.setdefault(key, 0)

        @rule(
            lines=st.lists(st.tuples(st.integers(0, 1), st.integers(1, 8)), min_size=1, max_size=3),
            country=st.sampled_from([None, "DE", "FR", "GB", "ES"]),
            ttl=st.integers(1, 120),
        )
        def reserve(self, lines: list[tuple[int, int]], country: str | None, ttl: int) -> None:
            self.owners += 1
            owner = f"sm_{self.variants[0]}_{self.owners}"
            wanted = service.sum_lines((self.variants[v], q) for v, q in lines)
            ships = [c for c in CODES if country is None or country in SHIPS_TO[c]]
            fillable = {
                variant: sum(max(self.model.free(variant, c), 0) for c in ships)
                for variant in wanted
            }
            possible = all(fillable[v] >= q for v, q in wanted.items())
            try:
                held = run(
                    in_tx(
                        service.reserve,
                        owner,
                        [(self.variants[v], q) for v, q in lines],
                        country=country,
                        ttl_seconds=ttl,
                        now=self.clock,
                    )
                )
            except Problem as exc:
                assert not possible, exc.body()
                # Out of reach of the country when none of it reaches there and warehouses
                # shipping elsewhere could fill every short line.
                anywhere = {v: sum(max(self.model.free(v, c), 0) for c in CODES) for v in wanted}
                short_lines = exc.extra["lines"]
                out_of_reach = country is not None and all(
                    line["available"] == 0 and anywhere[line["variant_id"]] >= line["requested"]
                    for line in short_lines
                )
                assert exc.code == ("not_deliverable" if out_of_reach else "out_of_stock")
                short = {line["variant_id"]: line for line in short_lines}
                for variant, line in short.items():
                    assert line["available"] == fillable[variant] < wanted[variant]
                return
            assert possible
            got = service.sum_lines((r.variant_id, r.quantity) for r in held)
            assert got == wanted
            self.model.active[owner] = []
            for r in held:
                assert r.warehouse_code in ships
                assert r.quantity <= self.model.free(r.variant_id, r.warehouse_code)
                key = (r.variant_id, r.warehouse_code)
                self.model.reserved[key] += r.quantity
                self.model.active[owner].append(
                    Held(r.variant_id, r.warehouse_code, r.quantity, r.expires_at)
                )

        @precondition(lambda self: bool(self.model.active))
        @rule(data=st.data())
        def commit(self, data: st.DataObject) -> None:
            owner = data.draw(st.sampled_from(sorted(self.model.active)))
            done = run(in_tx(service.commit, owner))
            assert sum(r.quantity for r in done) == sum(
                h.quantity for h in self.model.active[owner]
            )
            self.model.settle(owner, sold=True)
            assert run(in_tx(service.commit, owner)) == []  # twice: nothing more

        @precondition(lambda self: bool(self.model.active))
        @rule(data=st.data())
        def release(self, data: st.DataObject) -> None:
            owner = data.draw(st.sampled_from(sorted(self.model.active)))
            run(in_tx(service.release, owner, "changed mind"))
            self.model.settle(owner, sold=False)
            assert run(in_tx(service.release, owner)) == []

        @rule(seconds=st.integers(1, 90))
        def expire(self, seconds: int) -> None:
            self.clock += timedelta(seconds=seconds)
            run(in_tx(service.expire_due, self.clock, 100_000))
            for owner, holds in list(self.model.active.items()):
                if holds and holds[0].expires_at <= self.clock:
                    self.model.settle(owner, sold=False)

        @invariant()
        def stock_matches_model_and_ledger(self) -> None:
            if not self.variants:
                return

            async def read() -> tuple[dict[tuple[str, str], tuple[int, int]], list[Any]]:
                async with db.transaction() as conn:
                    rows = {}
                    for variant in self.variants:
                        for s in await service.stock_for_variant(conn, variant):
                            rows[(variant, s.warehouse_code)] = (s.on_hand, s.reserved)
                    return rows, await service.check_ledger(conn, self.variants)

            rows, differences = run(read())
            assert differences == []
            expected = {
                key: (on_hand, self.model.reserved.get(key, 0))
                for key, on_hand in self.model.on_hand.items()
            }
            assert rows == expected
            for on_hand, reserved in rows.values():
                assert 0 <= reserved <= on_hand

        def teardown(self) -> None:
            # Let later examples' expiry runs see only their own holds.
            for owner in list(self.model.active):
                run(in_tx(service.release, owner, "example over"))

    return InventoryMachine


async def test_random_operation_sequences_keep_the_invariant(
    db: Database, warehouses: Warehouses
) -> None:
    machine = make_machine(asyncio.get_running_loop(), db)
    await asyncio.to_thread(
        run_state_machine_as_test,
        machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )
