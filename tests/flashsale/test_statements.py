"""What a flash-sale purchase costs in SQL: the statements of its enqueue (the buyer's
``POST …/checkout``, in the crowd's hottest moment) and its share of a worker's batch. Every
statement is a round trip to a database whose cores the crowd shares; these counts keep them
from creeping up. The pricing setup is cached per process (a process that has priced a
purchase to the same country before), as in a rush."""

from __future__ import annotations

import pytest

from mercato.checkout import flash
from mercato.runtime import Runtime
from tests.checkout.conftest import make_customers
from tests.checkout.test_statements import sql_of
from tests.flashsale.test_checkout import a_sale, admitted, check_the_sale, drain, enqueue


def purchases_in(batch: list[str]) -> list[list[str]]:
    """The statements of each purchase of a group commit: those between its savepoint and
    the savepoint's release."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for statement in batch:
        if statement.startswith("SAVEPOINT"):
            current = []
        elif statement.startswith("RELEASE SAVEPOINT"):
            assert current is not None
            found.append(current)
            current = None
        elif current is not None:
            current.append(statement)
    return found


async def test_a_purchase_costs_a_bounded_number_of_statements(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One lane: the nine purchases in one batch, whose statements are not interleaved with
    # another lane's.
    monkeypatch.setattr(flash, "LANES", 1)
    sale_id, _ = await a_sale(runtime, 10)
    buyers = await make_customers(runtime.db, 10)
    tokens = [await admitted(runtime, sale_id, b) for b in buyers]
    assert all(tokens)
    # A first purchase warms the process's pricing cache, as in a rush.
    await enqueue(runtime, sale_id, buyers[0], str(tokens[0]))
    await drain(runtime)

    with sql_of(runtime.db) as at_the_door:
        await enqueue(runtime, sale_id, buyers[1], str(tokens[1]))
    # One transaction: the key, the admission (the place, guarded), the sale's variants and
    # price, the variant, the run's row and the workers' signal.
    assert at_the_door.transactions == 1
    assert len(at_the_door.statements) <= 10, at_the_door.statements

    for buyer, token in zip(buyers[2:], tokens[2:], strict=True):
        await enqueue(runtime, sale_id, buyer, str(token))
    with sql_of(runtime.db) as batch:
        await drain(runtime)
    placed = purchases_in(batch.statements)
    assert len(placed) == 9
    for statements in placed:
        # The order (5 inserts); the place's read, then the sale's, the place's and the
        # variant's updates (guarded: no read of the sale while the batch holds its row); the
        # sale out of the inventory hold (4); the run's progress.
        assert len(statements) <= 14, statements
        assert not [s for s in statements if s.startswith("SELECT flashsale_sales")]
    await check_the_sale(runtime, sale_id, 10)
