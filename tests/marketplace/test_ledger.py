"""The marketplace ledger: postings checked by hand, proportional reversals, idempotency, and
random sequences of sales, partial shipments, cancellations, returns, refunds and payouts
(Hypothesis), after which every entry balances, the accounts add up to zero, each seller's
payable is its statement's, and the commission kept is the sale's rule applied to what the
customer finally kept. Then the same seller's money moved from many transactions at once."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from mercato.db import Database, UnitOfWork
from mercato.marketplace import service
from mercato.marketplace.common import JOURNAL_ENTRIES
from mercato.marketplace.ledger import (
    COMMISSION_REVENUE,
    CUSTOMER_CLEARING,
    REFUNDS,
    UnbalancedEntry,
    _post,
    seller_payable,
)
from mercato.problems import Problem
from tests.marketplace.conftest import add_category, add_seller

pytestmark = pytest.mark.usefixtures("backend")
T = TypeVar("T")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
AT = datetime(2026, 3, 10, 12, tzinfo=UTC)
ALL_TIME = service.Period(datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


async def _rule(db: Database, rate: str, **scope: Any) -> str:
    async with db.transaction() as uow:
        draft = service.RuleDraft(rate=rate, currency="EUR", valid_from=T0, **scope)
        return (await service.create_rule(uow, draft, None)).id


async def _sale(uow: UnitOfWork, reference: str, seller_id: str, gross: int) -> service.SaleEntry:
    return await service.record_sale(
        uow,
        reference=reference,
        seller_id=seller_id,
        category_id=None,
        gross=gross,
        currency="EUR",
        at=AT,
    )


async def test_a_sale_and_its_refunds_by_hand(db: Database) -> None:
    seller_id = await add_seller(db, "sel_alpha")
    await _rule(db, "12.5", seller_id=seller_id)
    async with db.transaction() as uow:
        sale = await _sale(uow, "part-1/line-1", seller_id, 999)
        assert (sale.commission, sale.seller_share, sale.terms.rate_bp) == (125, 874, 1250)
        assert await service.account_balances(uow) == {
            (COMMISSION_REVENUE, "EUR"): -125,
            (CUSTOMER_CLEARING, "EUR"): 999,
            (seller_payable(seller_id), "EUR"): -874,
        }
        # A third back: the shop keeps the rate on the 666 kept (83.25 -> 83), gives back 42.
        first = await service.record_refund(
            uow, reference="rf-1", sale_reference=sale.reference, amount=333, at=AT
        )
        assert (first.amount, first.reversal, first.seller_debit) == (333, 42, 291)
        # One minor unit more: 665 kept -> 83.125 -> 83, nothing more to give back.
        second = await service.record_refund(
            uow, reference="rf-2", sale_reference=sale.reference, amount=1, at=AT
        )
        assert (second.reversal, second.seller_debit) == (0, 1)
        # The rest: the last refund takes whatever commission remains.
        last = await service.record_refund(
            uow, reference="rf-3", sale_reference=sale.reference, amount=665, at=AT
        )
        assert last.reversal == 125 - 42 - 0
        with pytest.raises(Problem) as refused:
            await service.record_refund(
                uow, reference="rf-4", sale_reference=sale.reference, amount=1, at=AT
            )
        assert refused.value.code == "refund_exceeds_sale" and refused.value.extra["remaining"] == 0
        balances = await service.account_balances(uow)
        assert balances[(COMMISSION_REVENUE, "EUR")] == 0
        assert balances[(seller_payable(seller_id), "EUR")] == 0
        assert balances[(REFUNDS, "EUR")] == -999
        assert sum(balances.values()) == 0
        assert await service.check_ledger(uow) == []


async def test_a_minimum_is_kept_on_what_is_kept(db: Database) -> None:
    seller_id = await add_seller(db, "sel_alpha")
    async with db.transaction() as uow:
        draft = service.RuleDraft(
            rate="5", currency="EUR", min_commission="1.00", max_commission="3.00", valid_from=T0
        )
        await service.create_rule(uow, draft, None)
        sale = await _sale(uow, "l1", seller_id, 10_000)  # 5 % = 500, lowered to 300
        assert sale.commission == 300
        half = await service.record_refund(
            uow, reference="r1", sale_reference="l1", amount=5000, at=AT
        )
        assert half.reversal == 300 - 250  # 250 on the 5,000 kept
        most = await service.record_refund(
            uow, reference="r2", sale_reference="l1", amount=4000, at=AT
        )
        assert most.reversal == 250 - 100  # 50 on 1,000 kept, raised to the minimum of 100
        # Cancelling the rest undoes the rest, commission included.
        rest = await service.record_cancellation(uow, sale_reference="l1", at=AT)
        assert (rest.kind, rest.amount, rest.reversal) == ("cancellation", 1000, 100)
        again = await service.record_cancellation(uow, sale_reference="l1", at=AT)
        assert again.entry_id == rest.entry_id
        assert (await service.get_sale(uow, "l1")) is not None
        assert await service.payable_balance(uow, seller_id, "EUR") == 0


async def test_sales_are_recorded_once(db: Database) -> None:
    seller_id = await add_seller(db, "sel_alpha")
    await _rule(db, "10")
    async with db.transaction() as uow:
        first = await _sale(uow, "l1", seller_id, 1000)
        again = await _sale(uow, "l1", seller_id, 1000)
        assert again.entry_id == first.entry_id
        with pytest.raises(Problem) as conflict:
            await _sale(uow, "l1", seller_id, 1001)
        assert conflict.value.code == "idempotency_conflict"
        refund = await service.record_refund(
            uow, reference="r1", sale_reference="l1", amount=100, at=AT
        )
        assert (
            await service.record_refund(uow, reference="r1", sale_reference="l1", amount=100, at=AT)
        ).entry_id == refund.entry_id
        with pytest.raises(Problem) as conflict:
            await service.record_refund(uow, reference="r1", sale_reference="l1", amount=99, at=AT)
        assert conflict.value.code == "idempotency_conflict"
        with pytest.raises(Problem) as unknown:
            await _sale(uow, "l2", "sel_nobody", 1000)
        assert unknown.value.status == 404
        with pytest.raises(Problem) as unknown:
            await service.record_refund(uow, reference="r2", sale_reference="l9", amount=1, at=AT)
        assert unknown.value.status == 404
        for bad in (0, -5):
            with pytest.raises(Problem) as refused:
                await _sale(uow, "l3", seller_id, bad)
            assert refused.value.extra["errors"][0]["field"] == "gross"
        count = await uow.scalar(select(func.count()).select_from(JOURNAL_ENTRIES))
        assert count == 2


async def test_an_unbalanced_entry_is_never_written(db: Database) -> None:
    seller_id = await add_seller(db, "sel_alpha")
    async with db.transaction() as uow:
        with pytest.raises(UnbalancedEntry):
            await _post(
                uow,
                kind="sale",
                reference="x",
                key="sale:x",
                seller_id=seller_id,
                currency="EUR",
                at=AT,
                postings=[(CUSTOMER_CLEARING, 100), (seller_payable(seller_id), -99)],
            )
        assert await uow.scalar(select(func.count()).select_from(JOURNAL_ENTRIES)) == 0


async def test_statements_split_by_period(db: Database) -> None:
    seller_id = await add_seller(db, "sel_alpha")
    await _rule(db, "10")
    march, april = (
        service.period_of("2026-03", None, None),
        service.period_of("2026-04", None, None),
    )
    async with db.transaction() as uow:
        await _sale(uow, "l1", seller_id, 1000)
        await service.record_sale(
            uow,
            reference="l2",
            seller_id=seller_id,
            category_id=None,
            gross=500,
            currency="EUR",
            at=datetime(2026, 4, 2, tzinfo=UTC),
        )
        await service.record_refund(
            uow,
            reference="r1",
            sale_reference="l1",
            amount=200,
            at=datetime(2026, 4, 3, tzinfo=UTC),
        )
        first = await service.statement(uow, seller_id, march, "EUR")
        second = await service.statement(uow, seller_id, april, "EUR")
    assert (first.opening_payable, first.sales, first.commission, first.net) == (0, 1000, 100, 900)
    assert first.closing_payable == 900 == second.opening_payable
    assert (second.sales, second.refunds, second.commission_charged) == (500, 200, 50)
    assert second.commission_reversed == 20 and second.net == 500 - 200 - 30
    assert second.closing_payable == 900 + 270


# --------------------------------------------------------------------------------------------
# Random sequences


@dataclass
class Line:
    reference: str
    seller_id: str
    category_id: str | None
    gross: int
    terms: service.Terms | None = None
    returned: int = 0
    state: str = "ordered"  # ordered, shipped, cancelled


@dataclass
class Model:
    lines: dict[str, Line] = field(default_factory=dict)
    orders: list[list[str]] = field(default_factory=list)
    paid_out: dict[str, int] = field(default_factory=dict)


def make_machine(
    loop: asyncio.AbstractEventLoop, db: Database, sellers: list[str], categories: list[str]
) -> type[RuleBasedStateMachine]:
    counter = itertools.count()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    async def in_tx(fn: Any, **kwargs: Any) -> Any:
        async with db.transaction() as uow:
            return await fn(uow, **kwargs)

    class LedgerMachine(RuleBasedStateMachine):
        orders = Bundle("orders")

        def __init__(self) -> None:
            super().__init__()
            self.model = Model()
            self.run_id = next(counter)

        def ref(self, what: str) -> str:
            return f"{what}-{self.run_id}-{next(counter)}"

        @initialize()
        def nothing_yet(self) -> None:
            # Each example keeps its own references; sellers and rules are shared, so the
            # totals are compared with what this example added (see ``start``).
            self.start = run(self.snapshot())

        async def snapshot(self) -> dict[str, int]:
            async with db.transaction() as uow:
                return {s: await service.payable_balance(uow, s, "EUR") for s in sellers}

        @rule(
            target=orders,
            lines=st.lists(
                st.tuples(
                    st.sampled_from(range(3)),
                    st.sampled_from([None, 0, 1]),
                    st.integers(1, 50_000),
                ),
                min_size=1,
                max_size=4,
            ),
        )
        def place_order(self, lines: list[tuple[int, int | None, int]]) -> int:
            refs = []
            for s, c, gross in lines:
                line = Line(
                    self.ref("line"),
                    sellers[s],
                    None if c is None else categories[c],
                    gross,
                )
                sale = run(
                    in_tx(
                        service.record_sale,
                        reference=line.reference,
                        seller_id=line.seller_id,
                        category_id=line.category_id,
                        gross=gross,
                        currency="EUR",
                        at=AT,
                    )
                )
                line.terms = sale.terms
                self.model.lines[line.reference] = line
                refs.append(line.reference)
            self.model.orders.append(refs)
            return len(self.model.orders) - 1

        @rule(order=orders, data=st.data())
        def ship_part_cancel_rest(self, order: int, data: st.DataObject) -> None:
            """A partial shipment: some lines go, the others are cancelled."""
            waiting = [
                r for r in self.model.orders[order] if self.model.lines[r].state == "ordered"
            ]
            if not waiting:
                return
            shipped = data.draw(st.sets(st.sampled_from(waiting)))
            for reference in waiting:
                line = self.model.lines[reference]
                if reference in shipped:
                    line.state = "shipped"
                    continue
                done = run(in_tx(service.record_cancellation, sale_reference=reference, at=AT))
                assert done.amount == line.gross - line.returned
                line.returned, line.state = line.gross, "cancelled"

        @rule(order=orders, data=st.data(), replay=st.booleans())
        def refund(self, order: int, data: st.DataObject, replay: bool) -> None:
            """A return or a goodwill refund of part of a line (sometimes sent twice)."""
            reference = data.draw(st.sampled_from(self.model.orders[order]))
            line = self.model.lines[reference]
            amount = data.draw(st.integers(1, max(1, line.gross)))
            refund_ref = self.ref("refund")
            attempts = 2 if replay else 1
            for _ in range(attempts):
                try:
                    run(
                        in_tx(
                            service.record_refund,
                            reference=refund_ref,
                            sale_reference=reference,
                            amount=amount,
                            at=AT,
                        )
                    )
                except Problem as exc:
                    assert exc.code == "refund_exceeds_sale"
                    assert amount > line.gross - line.returned
                    return
            assert amount <= line.gross - line.returned
            line.returned += amount

        @rule(order=orders, data=st.data(), replay=st.booleans())
        def return_across_parts(self, order: int, data: st.DataObject, replay: bool) -> None:
            """One return of several lines (each its own part, maybe its own seller): each
            part's share is a refund of its sale, all in one unit of work, as the
            ``marketplace-sales`` consumer records a ``RefundIssued`` (sometimes delivered
            twice)."""
            open_lines = [
                r
                for r in self.model.orders[order]
                if self.model.lines[r].gross > self.model.lines[r].returned
            ]
            if not open_lines:
                return
            chosen = data.draw(st.lists(st.sampled_from(open_lines), min_size=1, unique=True))
            shares = [
                (
                    r,
                    data.draw(
                        st.integers(1, self.model.lines[r].gross - self.model.lines[r].returned)
                    ),
                )
                for r in chosen
            ]
            return_id = self.ref("rma")
            for _ in range(2 if replay else 1):
                done = run(
                    in_tx(service.record_return_refunds, return_id=return_id, shares=shares, at=AT)
                )
                assert [(d.sale_reference, d.amount) for d in done] == shares
            for reference, amount in shares:
                self.model.lines[reference].returned += amount

        @rule(seller=st.sampled_from(range(3)), share=st.integers(1, 120))
        def payout(self, seller: int, share: int) -> None:
            """Pay out a share (in %) of what is owed: above 100 % is refused."""
            seller_id = sellers[seller]
            owed = run(self.snapshot())[seller_id]
            amount = owed * share // 100
            if amount <= 0:
                return
            try:
                run(
                    in_tx(
                        service.record_payout,
                        seller_id=seller_id,
                        amount=amount,
                        currency="EUR",
                        reference=self.ref("payout"),
                        period=service.period_of("2026-03", None, None),
                    )
                )
            except Problem as exc:
                assert exc.code == "payout_exceeds_balance" and amount > owed
                return
            assert amount <= owed
            self.model.paid_out[seller_id] = self.model.paid_out.get(seller_id, 0) + amount

        @invariant()
        def ledger_holds(self) -> None:
            run(self.check())

        async def check(self) -> None:
            async with db.transaction() as uow:
                assert await service.check_ledger(uow) == []
                balances = await service.account_balances(uow)
                assert sum(balances.values()) == 0
                commission_kept = 0
                for line in self.model.lines.values():
                    sale = await service.get_sale(uow, line.reference)
                    assert sale is not None and sale.returned == line.returned
                    assert line.terms is not None
                    kept = service.commission_amount(line.gross - line.returned, line.terms)
                    assert sale.commission - sale.reversed == kept
                    commission_kept += kept
                for seller_id in sellers:
                    owed = await service.payable_balance(uow, seller_id, "EUR")
                    whole = await service.statement(uow, seller_id, ALL_TIME, "EUR")
                    assert whole.closing_payable == owed
                    assert owed == whole.opening_payable + whole.net - whole.payouts
                    assert -balances.get((seller_payable(seller_id), "EUR"), 0) == owed
                    mine = [
                        line for line in self.model.lines.values() if line.seller_id == seller_id
                    ]
                    added = sum(line.gross - line.returned for line in mine) - sum(
                        service.commission_amount(line.gross - line.returned, line.terms)
                        for line in mine
                        if line.terms is not None
                    )
                    assert owed - self.start[seller_id] == added - self.model.paid_out.get(
                        seller_id, 0
                    )
                assert commission_kept >= 0

    return LedgerMachine


async def test_random_sequences_keep_the_books(db: Database, backend: str) -> None:
    sellers = [await add_seller(db, f"sel_{n}") for n in ("a", "b", "c")]
    categories = [await add_category(db, "Books"), await add_category(db, "Toys")]
    async with db.transaction() as uow:
        rules = [
            service.RuleDraft(rate="7.5", currency="EUR", valid_from=T0),
            service.RuleDraft(rate="10", currency="EUR", category_id=categories[0], valid_from=T0),
            service.RuleDraft(
                rate="12.5",
                currency="EUR",
                seller_id=sellers[0],
                min_commission="0.50",
                max_commission="40.00",
                valid_from=T0,
            ),
            service.RuleDraft(
                rate="3.33",
                currency="EUR",
                seller_id=sellers[1],
                category_id=categories[1],
                min_commission="2.00",
                valid_from=T0,
            ),
        ]
        for draft in rules:
            await service.create_rule(uow, draft, None)
    machine = make_machine(asyncio.get_running_loop(), db, sellers, categories)
    await asyncio.to_thread(
        run_state_machine_as_test,
        machine,
        settings=settings(
            max_examples=25 if backend == "sqlite" else 8,
            stateful_step_count=15,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        ),
    )


# --------------------------------------------------------------------------------------------
# One seller's money from many transactions at once

SALES = 10
GROSS = 1000  # at 10 %: 900 owed each
REFUND = 500  # 450 back from the seller each
PAYOUT = 1000


async def test_concurrent_sales_refunds_and_payouts(db: Database) -> None:
    seller_id = await add_seller(db, "sel_alpha")
    await _rule(db, "10")

    async def attempt(work: Any) -> Any:
        try:
            return await db.run(work, attempts=10)
        except Problem as exc:
            assert exc.code == "payout_exceeds_balance", exc.body()
            return None

    def sale(n: int) -> Any:
        return lambda uow: _sale(uow, f"l{n}", seller_id, GROSS)

    def refund(n: int) -> Any:
        return lambda uow: service.record_refund(
            uow, reference=f"r{n}", sale_reference=f"l{n}", amount=REFUND, at=AT
        )

    def payout(n: int) -> Any:
        return lambda uow: service.record_payout(
            uow,
            seller_id=seller_id,
            amount=PAYOUT,
            currency="EUR",
            reference=f"p{n}",
            period=service.period_of("2026-03", None, None),
        )

    # Every sale sent twice at once: one entry each.
    sales = await asyncio.gather(*(attempt(sale(n)) for n in range(SALES) for _ in range(2)))
    assert len({s.entry_id for s in sales}) == SALES
    # Refunds (each twice) race with payouts (each twice) on the same payable.
    tasks = [attempt(refund(n)) for n in range(SALES) for _ in range(2)]
    tasks += [attempt(payout(n)) for n in range(SALES) for _ in range(2)]
    results = await asyncio.gather(*tasks)
    refunds = [r for r in results[: 2 * SALES]]
    payouts = [p for p in results[2 * SALES :] if p is not None]
    assert len({r.entry_id for r in refunds}) == SALES
    paid = {p.reference: p for p in payouts}
    for p in payouts:
        assert paid[p.reference].id == p.id  # the same reference: the same payout
    async with db.transaction() as uow:
        assert await service.check_ledger(uow) == []
        balances = await service.account_balances(uow)
        assert sum(balances.values()) == 0
        owed = await service.payable_balance(uow, seller_id, "EUR")
        assert owed == SALES * 900 - SALES * 450 - len(paid) * PAYOUT
        counts = dict(
            (
                await uow.execute(
                    select(JOURNAL_ENTRIES.c.kind, func.count()).group_by(JOURNAL_ENTRIES.c.kind)
                )
            ).all()
        )
        assert counts == {"sale": SALES, "refund": SALES, "payout": len(paid)}
        # Replayed in the order they committed (one at a time, under the seller's lock), no
        # payout ever took more than was owed at that moment.
        entries = (
            await uow.execute(
                select(JOURNAL_ENTRIES.c.id, JOURNAL_ENTRIES.c.kind)
                .where(JOURNAL_ENTRIES.c.seller_id == seller_id)
                .order_by(JOURNAL_ENTRIES.c.created_at)
            )
        ).all()
    running = 0
    for entry in entries:
        if entry.kind == "sale":
            running += 900
        elif entry.kind == "refund":
            running -= 450
        else:
            assert running >= PAYOUT
            running -= PAYOUT
    assert running == owed
