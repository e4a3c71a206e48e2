"""The back-in-stock mail: a customer who saved an item is mailed once each time it comes back
after selling out, driven by the inventory's real ``StockChanged`` events through the outbox
and the notifications module's mail path; repeated or parallel deliveries of the same event
send one mail."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from mercato import worker
from mercato.events import Event, OutboxEvent, dispatcher
from mercato.inventory import service as inventory
from mercato.notifications.service import EMAILS
from mercato.recommendations import events as recommendation_events
from mercato.recommendations import service, wishlist
from mercato.runtime import Runtime
from tests.notifications.conftest import forget_deliveries
from tests.recommendations.signals import (
    Customer,
    count_rows,
    fast_password_hashing,  # noqa: F401  (autouse)
    make_customer,
    make_shirt,
    receive,
    sell_out,
)


async def _save(runtime: Runtime, customer: Customer, product_id: str, variant: str | None) -> None:
    async with runtime.db.transaction() as uow:
        await service.save_to_wishlist(uow, customer.id, product_id, variant)


async def _mails(runtime: Runtime) -> list[Any]:
    async with runtime.db.transaction() as uow:
        rows = await uow.execute(
            select(EMAILS).where(EMAILS.c.kind == "back_in_stock").order_by(EMAILS.c.created_at)
        )
        return list(rows)


async def test_one_mail_per_return_to_stock(runtime: Runtime) -> None:
    ada = await make_customer(runtime, "ada@example.com")
    shirt = await make_shirt(runtime.db)
    await _save(runtime, ada, shirt.product_id, shirt.small)
    await worker.run_once(runtime)

    await sell_out(runtime.db, shirt.small)
    await worker.run_once(runtime)
    assert await _mails(runtime) == []  # sold out: nothing to tell yet

    await receive(runtime.db, shirt.small)
    await worker.run_once(runtime)
    [mail] = await _mails(runtime)
    assert mail.to_address == "ada@example.com" and mail.status == "sent"
    assert mail.subject == "Mercato: Linen shirt is back in stock"
    assert "Medium" not in mail.message and "Small" in mail.message

    # More stock while in stock, and the same event delivered again: no further mail.
    await receive(runtime.db, shirt.small)
    await worker.run_once(runtime)
    await forget_deliveries(runtime.db, recommendation_events.RESTOCK_CONSUMER)
    await worker.run_once(runtime)
    assert len(await _mails(runtime)) == 1

    # The other size moving changes nothing for an entry watching the small one.
    await sell_out(runtime.db, shirt.medium)
    await receive(runtime.db, shirt.medium)
    await worker.run_once(runtime)
    assert len(await _mails(runtime)) == 1

    # Sold out again, back again: a second mail.
    await sell_out(runtime.db, shirt.small)
    await worker.run_once(runtime)
    await receive(runtime.db, shirt.small)
    await worker.run_once(runtime)
    assert len(await _mails(runtime)) == 2


async def test_a_product_saved_whole_is_back_when_any_size_is(runtime: Runtime) -> None:
    ada = await make_customer(runtime, "ada@example.com")
    bob = await make_customer(runtime, "bob@example.com")
    shirt = await make_shirt(runtime.db)
    await _save(runtime, ada, shirt.product_id, None)
    await sell_out(runtime.db, shirt.small)
    await worker.run_once(runtime)
    await receive(runtime.db, shirt.small)
    await worker.run_once(runtime)
    assert await _mails(runtime) == []  # the medium was there all along

    await sell_out(runtime.db, shirt.small)
    await sell_out(runtime.db, shirt.medium)
    # Saved while sold out: armed from the start.
    await _save(runtime, bob, shirt.product_id, None)
    await worker.run_once(runtime)
    await receive(runtime.db, shirt.medium)
    await worker.run_once(runtime)
    assert sorted(m.to_address for m in await _mails(runtime)) == [
        "ada@example.com",
        "bob@example.com",
    ]


async def test_removed_before_the_mail_is_written_means_no_mail(runtime: Runtime) -> None:
    ada = await make_customer(runtime, "ada@example.com")
    shirt = await make_shirt(runtime.db)
    await sell_out(runtime.db, shirt.small)
    await _save(runtime, ada, shirt.product_id, shirt.small)
    await receive(runtime.db, shirt.small)
    # The stock consumer alone runs: the customer is told, the mail is not written yet.
    await dispatcher.dispatch_once(runtime, only=(recommendation_events.RESTOCK_CONSUMER,))
    async with runtime.db.transaction() as uow:
        await service.remove_from_wishlist(uow, ada.id, shirt.product_id)
    await worker.run_once(runtime)
    assert await _mails(runtime) == []


async def _last_stock_event(runtime: Runtime, variant_id: str) -> Event:
    async with runtime.db.transaction() as uow:
        row = (
            await uow.execute(
                select(OutboxEvent.__table__)
                .where(OutboxEvent.type == inventory.STOCK_CHANGED)
                .order_by(OutboxEvent.seq.desc())
                .limit(1)
            )
        ).one()
    assert row.payload["variant_id"] == variant_id
    return Event(row.seq, row.id, row.type, row.aggregate_id, dict(row.payload), row.occurred_at)


async def test_two_parallel_deliveries_of_one_restock_send_one_mail(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three customers wait for the same size; the restock's event is handled twice at once."""
    customers = [await make_customer(runtime, f"c{n}@example.com") for n in range(3)]
    shirt = await make_shirt(runtime.db)
    for customer in customers:
        await _save(runtime, customer, shirt.product_id, shirt.small)
    await sell_out(runtime.db, shirt.small)
    await worker.run_once(runtime)
    await receive(runtime.db, shirt.small)
    event = await _last_stock_event(runtime, shirt.small)

    if runtime.db.is_sqlite:
        # One writer at a time (BEGIN IMMEDIATE): the second delivery waits for the first.
        await asyncio.gather(*(recommendation_events.check_restock(runtime, event) for _ in "ab"))
    else:
        # Both transactions read the stock as back before either decides: the conditional
        # update is all that stands between them and a second mail.
        both_read = asyncio.Barrier(2)
        availability = wishlist.inventory.availability

        async def read_then_wait(*args: Any, **kwargs: Any) -> dict[str, int]:
            found = await availability(*args, **kwargs)
            await both_read.wait()
            return found

        with monkeypatch.context() as patched:
            patched.setattr(wishlist.inventory, "availability", read_then_wait)
            await asyncio.gather(
                *(recommendation_events.check_restock(runtime, event) for _ in "ab")
            )

    assert await count_rows(runtime.db, OutboxEvent.__table__, type=service.BACK_IN_STOCK) == 3
    await worker.run_once(runtime)  # the worker delivers the same event a third time
    mails = await _mails(runtime)
    assert sorted(m.to_address for m in mails) == [c.email for c in customers]
