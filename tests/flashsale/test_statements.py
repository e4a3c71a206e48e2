"""What a flash-sale purchase costs in SQL: the statements of its enqueue (the buyer's
``POST …/checkout``, in the crowd's hottest moment) and its share of a worker's batch. Every
statement is a round trip to a database whose cores the crowd shares; these counts keep them
from creeping up. The pricing setup is cached per process (a process that has priced a
purchase to the same country before), as in a rush."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from mercato.runtime import Runtime
from tests.checkout.conftest import make_customers
from tests.flashsale.test_checkout import a_sale, admitted, check_the_sale, drain, enqueue


@contextmanager
def statements_of(runtime: Runtime) -> Iterator[list[str]]:
    """The SQL statements sent meanwhile, ``BEGIN`` and ``COMMIT`` included (each a round trip
    on PostgreSQL)."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(" ".join(statement.split())[:120])

    def begun(_conn: Any) -> None:
        sent.append("BEGIN")

    def committed(_conn: Any) -> None:
        sent.append("COMMIT")

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "begin", begun)
    event.listen(engine, "commit", committed)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "begin", begun)
        event.remove(engine, "commit", committed)


def queries(sent: list[str]) -> list[str]:
    return [s for s in sent if s.split()[0] not in ("BEGIN", "COMMIT")]


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


async def test_a_purchase_costs_a_bounded_number_of_statements(runtime: Runtime) -> None:
    sale_id, _ = await a_sale(runtime, 10)
    buyers = await make_customers(runtime.db, 10)
    tokens = [await admitted(runtime, sale_id, b) for b in buyers]
    assert all(tokens)
    # A first purchase warms the process's pricing cache, as in a rush.
    await enqueue(runtime, sale_id, buyers[0], str(tokens[0]))
    await drain(runtime)

    with statements_of(runtime) as at_the_door:
        await enqueue(runtime, sale_id, buyers[1], str(tokens[1]))
    # One transaction: the key, the admission (the place, guarded), the sale's variants and
    # price, the variant, the run's row and the workers' signal.
    assert at_the_door.count("COMMIT") == 1
    assert len(queries(at_the_door)) <= 10, at_the_door

    for buyer, token in zip(buyers[2:], tokens[2:], strict=True):
        await enqueue(runtime, sale_id, buyer, str(token))
    with statements_of(runtime) as batch:
        await drain(runtime)
    placed = purchases_in(batch)
    assert len(placed) == 9
    for statements in placed:
        # The order (5 inserts), the place and the sale's counters (guarded updates, no read
        # of the sale while the batch holds its row), the inventory hold's sale (4) and the
        # run's progress.
        assert len(statements) <= 14, statements
        assert not [s for s in statements if s.startswith("SELECT flashsale_sales")]
    await check_the_sale(runtime, sale_id, 10)
