"""Placing orders, transitions with their history and events, and the line counters."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace

import pytest
from sqlalchemy import select

from mercato.db import Database
from mercato.orders import service
from mercato.orders.service import HISTORY, STATUSES, TRANSITIONS
from mercato.problems import Problem
from tests.orders.conftest import events_of, force_status, get, make_draft, move, place, snapshot


async def test_create_order_writes_order_lines_history_and_events(db: Database) -> None:
    draft = make_draft(email="  Shopper@Example.COM ")
    order = await place(db, draft)

    assert order.id == draft.id and order.checkout_id == draft.checkout_id
    assert order.status == "paid" and order.version == 1
    assert order.email == "shopper@example.com"
    assert (order.subtotal, order.shipping, order.total) == (8548, 495, 9043)
    assert order.refunded_total == 0 and order.units_shipped == 0
    assert [(line.sku, line.quantity, line.unit_price, line.total) for line in order.lines] == [
        ("SKU-A", 2, 1999, 3998),
        ("SKU-B", 1, 4550, 4550),
    ]
    assert all(line.id.startswith("ol_") for line in order.lines)
    assert [(h.seq, h.from_status, h.to_status) for h in order.history] == [
        (1, None, "paid"),
    ]
    placed = await events_of(db, order.id, "OrderPlaced")
    assert len(placed) == 1
    payload = placed[0][1]
    assert payload["order_id"] == order.id and payload["user_id"] == "usr_test"
    assert payload["email"] == "shopper@example.com"
    assert (payload["total"], payload["currency"]) == (9043, "EUR")
    assert [(li["variant_id"], li["quantity"]) for li in payload["lines"]] == [
        ("var_a", 2),
        ("var_b", 1),
    ]
    changed = await events_of(db, order.id, "OrderStatusChanged")
    assert [(p["from"], p["to"]) for _, p in changed] == [(None, "paid")]


async def test_create_order_answers_what_a_read_finds(db: Database) -> None:
    # The order is built from what was written, not read back: it must equal a fresh read.
    order = await place(db, make_draft(email="Read@Back.example"))
    assert await get(db, order.id) == order
    assert [t for t, _ in await events_of(db, order.id)] == [
        "OrderPlaced",
        "OrderStatusChanged",
    ]


async def test_create_order_is_idempotent(db: Database) -> None:
    draft = make_draft()
    first = await place(db, draft)
    again = await place(db, draft)
    assert again == first
    assert len(await events_of(db, draft.id, "OrderPlaced")) == 1


async def test_concurrent_creates_of_one_draft_make_one_order(db: Database) -> None:
    draft = make_draft()
    made = await asyncio.gather(*(place(db, draft) for _ in range(8)))
    assert {o.id for o in made} == {draft.id}
    assert all(o.version == 1 and len(o.lines) == 2 for o in made)
    assert len(await events_of(db, draft.id, "OrderPlaced")) == 1
    assert len(await events_of(db, draft.id)) == 2  # OrderPlaced + its birth as paid


async def test_a_second_order_for_the_same_checkout_is_refused(db: Database) -> None:
    first = await place(db)
    before = await snapshot(db)
    with pytest.raises(Problem) as caught:
        await place(db, make_draft(checkout_id=first.checkout_id))
    assert (caught.value.status, caught.value.code) == (409, "order_exists")
    assert await snapshot(db) == before


async def test_create_order_refuses_a_broken_draft(db: Database) -> None:
    before = await snapshot(db)
    with pytest.raises(ValueError, match="at least one line"):
        await place(db, replace(make_draft(), lines=()))
    assert await snapshot(db) == before


async def test_each_transition_is_a_history_row_and_an_event(db: Database) -> None:
    order = await place(db)
    async with db.transaction() as conn:
        await service.transition(conn, order.id, "fulfilling", actor="staff:usr_1")
        await service.transition(conn, order.id, "shipped", actor="system:fulfilment")
        done = await service.transition(
            conn, order.id, "delivered", actor="system:carrier", reason="signed by A. Lovelace"
        )
    assert done.status == "delivered" and done.version == 4
    assert [(h.seq, h.from_status, h.to_status, h.actor) for h in done.history][1:] == [
        (2, "paid", "fulfilling", "staff:usr_1"),
        (3, "fulfilling", "shipped", "system:fulfilment"),
        (4, "shipped", "delivered", "system:carrier"),
    ]
    assert done.history[-1].reason == "signed by A. Lovelace"
    changed = [p for _, p in await events_of(db, order.id, "OrderStatusChanged")]
    assert [(p["version"], p["from"], p["to"]) for p in changed][1:] == [
        (2, "paid", "fulfilling"),
        (3, "fulfilling", "shipped"),
        (4, "shipped", "delivered"),
    ]
    assert changed[-1]["actor"] == "system:carrier"
    assert changed[-1]["reason"] == "signed by A. Lovelace"


async def test_an_illegal_transition_is_a_409_problem_and_writes_nothing(db: Database) -> None:
    order = await place(db)
    before = await snapshot(db)
    with pytest.raises(Problem) as caught:
        await move(db, order.id, "delivered")
    problem = caught.value
    assert (problem.status, problem.code) == (409, "invalid_transition")
    body = problem.body()
    assert body["from"] == "paid" and body["to"] == "delivered"
    assert body["allowed"] == ["cancelled", "fulfilling", "shipped"]
    assert await snapshot(db) == before


async def test_transition_refusals(db: Database) -> None:
    order = await place(db)
    before = await snapshot(db)
    with pytest.raises(Problem) as unknown:
        await move(db, "ord_missing", "shipped")
    assert (unknown.value.status, unknown.value.code) == (404, "not_found")
    with pytest.raises(Problem) as bad_status:
        await move(db, order.id, "teleported")
    assert (bad_status.value.status, bad_status.value.code) == (422, "validation_error")
    with pytest.raises(Problem) as unexpected:
        async with db.transaction() as conn:
            await service.transition(
                conn, order.id, "shipped", actor="test", expected_from=["fulfilling"]
            )
    assert (unexpected.value.status, unexpected.value.code) == (409, "invalid_transition")
    assert unexpected.value.body()["from"] == "paid"
    assert await snapshot(db) == before


async def test_every_edge_agrees_with_the_table(db: Database) -> None:
    """All 64 (from, to) pairs: the allowed ones succeed, every other one is a 409."""
    order = await place(db)
    for from_status, to_status in itertools.product(STATUSES, STATUSES):
        await force_status(db, order.id, from_status)
        try:
            moved = await move(db, order.id, to_status)
        except Problem as exc:
            assert to_status not in TRANSITIONS[from_status], (from_status, to_status)
            assert exc.code == "invalid_transition"
            assert (exc.extra["from"], exc.extra["to"]) == (from_status, to_status)
        else:
            assert to_status in TRANSITIONS[from_status], (from_status, to_status)
            assert moved.status == to_status
            assert moved.history[-1].from_status == from_status


async def test_many_concurrent_transitions_leave_one_order_in_one_state(db: Database) -> None:
    order = await place(db)
    targets = ["fulfilling", "shipped", "cancelled"] * 8

    async def attempt(to_status: str) -> str | None:
        try:
            await move(db, order.id, to_status)
        except Problem as exc:
            assert exc.code == "invalid_transition"
            return None
        return to_status

    won = [t for t in await asyncio.gather(*(attempt(t) for t in targets)) if t is not None]
    final = await get(db, order.id)
    # Whatever won, the machine allowed it from the state it actually left.
    assert won and final.status in won
    for entry in final.history[1:]:
        assert entry.from_status is not None
        assert entry.to_status in TRANSITIONS[entry.from_status]
    chain = [h.to_status for h in final.history]
    assert [h.from_status for h in final.history[1:]] == chain[:-1]
    assert [h.seq for h in final.history] == list(range(1, final.version + 1))
    async with db.transaction() as conn:
        rows = (
            await conn.execute(select(HISTORY.c.seq).where(HISTORY.c.order_id == order.id))
        ).all()
    assert len(rows) == final.version == 1 + len(won)


async def test_many_clients_making_the_same_move_one_wins(db: Database) -> None:
    order = await place(db)

    async def attempt() -> bool:
        try:
            await move(db, order.id, "fulfilling")
        except Problem as exc:
            assert exc.code == "invalid_transition"
            assert exc.extra["from"] == "fulfilling"
            return False
        return True

    assert sum(await asyncio.gather(*(attempt() for _ in range(20)))) == 1
    final = await get(db, order.id)
    assert final.status == "fulfilling" and final.version == 2
    assert len(await events_of(db, order.id, "OrderStatusChanged")) == 2


async def test_record_shipped_and_returned_keep_within_the_lines(db: Database) -> None:
    order = await place(db)
    a, b = order.lines
    async with db.transaction() as conn:
        shipped = await service.record_shipped(conn, order.id, [(a.id, 1), (a.id, 1), (b.id, 1)])
    assert [line.quantity_shipped for line in shipped.lines] == [2, 1]
    assert shipped.units_shipped == 3

    before = await snapshot(db)
    with pytest.raises(Problem) as too_many:
        async with db.transaction() as conn:
            await service.record_shipped(conn, order.id, [(b.id, 1)])
    assert (too_many.value.status, too_many.value.code) == (409, "quantity_exceeded")
    with pytest.raises(Problem) as unknown_line:
        async with db.transaction() as conn:
            await service.record_shipped(conn, order.id, [("ol_missing", 1)])
    assert unknown_line.value.status == 422
    with pytest.raises(Problem) as not_delivered:
        async with db.transaction() as conn:
            await service.record_returned(conn, order.id, [(a.id, 1)])
    assert (not_delivered.value.status, not_delivered.value.code) == (409, "invalid_order_state")
    assert await snapshot(db) == before

    await move(db, order.id, "shipped", "delivered", "return_requested")
    with pytest.raises(Problem) as more_than_shipped:
        async with db.transaction() as conn:
            await service.record_returned(conn, order.id, [(a.id, 3)])
    assert more_than_shipped.value.code == "quantity_exceeded"
    async with db.transaction() as conn:
        returned = await service.record_returned(conn, order.id, [(a.id, 1)])
        refunded = await service.record_refund(conn, order.id, 1999)
    assert [line.quantity_returned for line in returned.lines] == [1, 0]
    assert refunded.refunded_total == 1999
    with pytest.raises(Problem) as over_refund:
        async with db.transaction() as conn:
            await service.record_refund(conn, order.id, order.total)
    assert (over_refund.value.status, over_refund.value.code) == (409, "refund_exceeds_total")


async def test_partial_shipping_within_one_call_is_all_or_nothing(db: Database) -> None:
    order = await place(db)
    a, b = order.lines
    before = await snapshot(db)
    with pytest.raises(Problem) as caught:
        async with db.transaction() as conn:
            await service.record_shipped(conn, order.id, [(a.id, 1), (b.id, 2)])
    assert caught.value.code == "quantity_exceeded"
    assert await snapshot(db) == before


async def test_nothing_ships_from_a_cancelled_order(db: Database) -> None:
    order = await place(db)
    await move(db, order.id, "cancelled")
    with pytest.raises(Problem) as caught:
        async with db.transaction() as conn:
            await service.record_shipped(conn, order.id, [(order.lines[0].id, 1)])
    assert (caught.value.status, caught.value.code) == (409, "invalid_order_state")


async def test_an_order_with_shipped_items_cannot_be_cancelled(db: Database) -> None:
    order = await place(db)
    await move(db, order.id, "fulfilling")
    async with db.transaction() as conn:
        await service.record_shipped(conn, order.id, [(order.lines[0].id, 1)])
    with pytest.raises(Problem) as caught:
        await move(db, order.id, "cancelled")
    assert (caught.value.status, caught.value.code) == (409, "invalid_transition")
    assert "shipped" in caught.value.detail
    assert (await get(db, order.id)).status == "fulfilling"
