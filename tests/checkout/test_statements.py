"""What a checkout costs in SQL: the statements and transactions of one ``POST /api/checkout``.

A checkout is CPU-bound on the statements it runs, and every transaction is a commit to wait
for; these counts keep both from creeping up. The pricing setup is cached per process (the
figures are those of a process that has served a checkout to the same country before).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from mercato.checkout import service
from mercato.db import Database
from mercato.runtime import Runtime
from tests.checkout.conftest import (
    BODY,
    Shop,
    fill_cart,
    make_customer,
    make_variant,
    post_checkout,
)


@dataclass
class Sent:
    statements: list[str] = field(default_factory=list)
    transactions: int = 0


@contextmanager
def sql_of(db: Database) -> Iterator[Sent]:
    """The SQL statements sent over ``db`` meanwhile, and its commits (SQLite's ``BEGIN
    IMMEDIATE`` left out, so both backends count the same)."""
    sent = Sent()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.lstrip().upper().startswith("BEGIN"):
            sent.statements.append(" ".join(statement.split())[:160])

    def committed(_conn: Any) -> None:
        sent.transactions += 1

    engine = db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine, "commit", committed)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine, "commit", committed)


@pytest.mark.parametrize(
    ("promo_code", "statements"),
    [
        # Token; cart, variants; stock read, savepoint, hold, ledger, event, stock; the run.
        # The payment: intent, its event, the processor's charge and operation, the answer,
        # the intent, its event. The order, its part(s), lines, history, event; the cart
        # emptied (version, lines); the stock sold (reservations, ledger, stock); the run.
        (None, 28),
        # And the code read, its use taken (count, per-customer count, redemption) and made
        # final.
        ("WELCOME10", 33),
    ],
)
async def test_one_checkout_in_five_transactions(
    app: FastAPI,
    client: httpx.AsyncClient,
    db: Database,
    shop: Shop,
    promo_code: str | None,
    statements: int,
) -> None:
    runtime: Runtime = app.state.runtime
    service.pricing_setup_cache(runtime.extras).ttl_seconds = 3600
    variant = await make_variant(db, price=1999, stock=10)
    buyer = await make_customer(db)
    await fill_cart(db, buyer.id, (variant, 1))
    assert (await post_checkout(client, buyer, "warm-up")).status_code == 201
    await fill_cart(db, buyer.id, (variant, 2))

    runtime: Runtime = app.state.runtime
    with sql_of(runtime.db) as sent:
        r = await post_checkout(client, buyer, "measured", {**BODY, "promo_code": promo_code})

    assert r.status_code == 201, r.text
    assert len(sent.statements) == statements, "\n".join(sent.statements)
    # The first step with the run's row; the payment's three; the order with the run's end.
    assert sent.transactions == 5
