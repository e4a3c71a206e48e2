"""The inventory rules, called as services: receive, adjust, reserve, commit, release, expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from mercato.db import Database, utcnow
from mercato.events import OutboxEvent
from mercato.inventory import service
from mercato.inventory.service import RESERVATIONS, STOCK
from mercato.problems import Problem
from tests.factories import make_product
from tests.inventory.conftest import (
    Warehouses,
    ledger_ok,
    new_variants,
    receive,
    snapshot,
    stock_of,
)


async def reserve(
    db: Database, owner: str, lines: list[tuple[str, int]], **kw: object
) -> list[service.ReservationInfo]:
    async with db.transaction() as conn:
        return await service.reserve(conn, owner, lines, **kw)  # type: ignore[arg-type]


async def test_receive_adds_stock_and_writes_ledger_and_event(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    async with db.transaction() as conn:
        level = await service.receive(conn, variant, "BER", 7, reference="PO-1")
        level = await service.receive(conn, variant, "ber", 3)
    assert (level.on_hand, level.reserved, level.available) == (10, 0, 10)
    assert level.version == 2
    async with db.transaction() as conn:
        assert await service.availability(conn, [variant, "var_unknown"]) == {
            variant: 10,
            "var_unknown": 0,
        }
        events = (
            (
                await conn.execute(
                    select(OutboxEvent.payload).where(
                        OutboxEvent.type == "StockChanged", OutboxEvent.aggregate_id == variant
                    )
                )
            )
            .scalars()
            .all()
        )
    assert [e["available"] for e in events] == [7, 10]
    await ledger_ok(db)


async def test_receive_by_sku(db: Database, warehouses: Warehouses) -> None:
    async with db.transaction() as session:
        _, (vid,) = await make_product(session, variants=[{"sku": "INV-SKU-1"}])
    async with db.transaction() as conn:
        level = await service.receive(conn, "INV-SKU-1", "LYS", 4)
    assert level.variant_id == vid
    assert await stock_of(db, vid) == {"LYS": (4, 0)}


async def test_adjust_never_goes_below_reserved(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 10)
    await reserve(db, "co_1", [(variant, 6)])
    async with db.transaction() as conn:
        level = await service.adjust(conn, variant, "BER", -3, "count found 3 missing")
    assert (level.on_hand, level.reserved) == (7, 6)
    before = await snapshot(db)
    with pytest.raises(Problem) as info:
        async with db.transaction() as conn:
            await service.adjust(conn, variant, "BER", -2, "damaged")
    assert info.value.status == 409
    assert info.value.code == "insufficient_stock"
    assert info.value.extra["available"] == 1
    assert await snapshot(db) == before
    async with db.transaction() as conn:
        await service.adjust(conn, variant, "LYS", 5, "found in Lyon")
    assert await stock_of(db, variant) == {"BER": (7, 6), "LYS": (5, 0)}
    await ledger_ok(db)


async def test_two_lines_of_one_variant_are_checked_together(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 5)
    before = await snapshot(db)
    with pytest.raises(Problem) as info:
        await reserve(db, "co_1", [(variant, 3), (variant, 3)])
    assert info.value.code == "out_of_stock"
    assert info.value.extra["lines"] == [{"variant_id": variant, "requested": 6, "available": 5}]
    assert await snapshot(db) == before
    held = await reserve(db, "co_2", [(variant, 2), (variant, 3)])
    assert [(r.warehouse_code, r.quantity) for r in held] == [("BER", 5)]
    assert await stock_of(db, variant) == {"BER": (5, 5)}


async def test_multi_line_reserve_is_all_or_nothing(db: Database, warehouses: Warehouses) -> None:
    first, second = await new_variants(db, 2)
    await receive(db, first, "BER", 10)
    await receive(db, first, "LYS", 10)
    await receive(db, second, "BER", 1)
    before = await snapshot(db)
    with pytest.raises(Problem) as info:
        # The first line alone would split across both warehouses; the second cannot be filled.
        await reserve(db, "co_1", [(first, 15), (second, 2)])
    assert info.value.status == 409
    assert info.value.code == "out_of_stock"
    assert info.value.extra["lines"] == [{"variant_id": second, "requested": 2, "available": 1}]
    assert info.value.extra["available"] == 1
    assert await snapshot(db) == before


async def test_prefers_one_warehouse_then_splits_within_the_country(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 4)
    await receive(db, variant, "LYS", 6)
    await receive(db, variant, "LDN", 20)
    # London could fill it but does not ship to France: Lyon can fill it alone.
    held = await reserve(db, "co_1", [(variant, 5)], country="FR")
    assert [(r.warehouse_code, r.quantity) for r in held] == [("LYS", 5)]
    # Now no single French-shipping warehouse has 5: split, fullest first.
    held = await reserve(db, "co_2", [(variant, 5)], country="fr")
    assert sorted((r.warehouse_code, r.quantity) for r in held) == [("BER", 4), ("LYS", 1)]
    with pytest.raises(Problem) as info:
        await reserve(db, "co_3", [(variant, 1)], country="DE")
    assert info.value.extra["available"] == 0
    held = await reserve(db, "co_4", [(variant, 20)])  # no country: any warehouse
    assert [(r.warehouse_code, r.quantity) for r in held] == [("LDN", 20)]
    assert await stock_of(db, variant) == {"BER": (4, 4), "LYS": (6, 6), "LDN": (20, 20)}
    await ledger_ok(db)


async def test_reserve_from_one_named_warehouse(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 4)
    await receive(db, variant, "LYS", 6)
    held = await reserve(db, "co_1", [(variant, 3)], warehouse="BER")
    assert [(r.warehouse_code, r.quantity) for r in held] == [("BER", 3)]
    with pytest.raises(Problem) as info:
        await reserve(db, "co_2", [(variant, 3)], warehouse="BER")
    assert info.value.extra["available"] == 1


async def test_commit_and_release_are_idempotent(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 10)
    await reserve(db, "co_1", [(variant, 4)])
    await reserve(db, "co_2", [(variant, 3)])
    async with db.transaction() as conn:
        committed = await service.commit(conn, "co_1")
        assert [(r.quantity, r.state) for r in committed] == [(4, "committed")]
        assert await service.commit(conn, "co_1") == []
        assert await service.release(conn, "co_1") == []
    assert await stock_of(db, variant) == {"BER": (6, 3)}
    async with db.transaction() as conn:
        released = await service.release(conn, "co_2", "payment failed")
        assert [(r.quantity, r.state) for r in released] == [(3, "released")]
        assert await service.release(conn, "co_2") == []
        assert await service.commit(conn, "co_2") == []
    assert await stock_of(db, variant) == {"BER": (6, 0)}
    async with db.transaction() as conn:
        assert await service.active_reservations(conn) == []
        states = sorted(r.state for r in await service.list_reservations(conn, state=None))
    assert states == ["committed", "released"]
    await ledger_ok(db)


async def _stock_events(db: Database, variant: str) -> list[int]:
    async with db.transaction() as conn:
        payloads = await conn.scalars(
            select(OutboxEvent.payload)
            .where(OutboxEvent.type == "StockChanged", OutboxEvent.aggregate_id == variant)
            .order_by(OutboxEvent.seq)
        )
        return [p["available"] for p in payloads]


async def test_commit_answers_with_codes_and_announces_only_changes_in_what_can_be_sold(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 4)
    await receive(db, variant, "LYS", 3)
    held = await reserve(db, "co_split", [(variant, 6)], country="FR")
    assert sorted((r.warehouse_code, r.quantity) for r in held) == [("BER", 4), ("LYS", 2)]
    assert (await _stock_events(db, variant))[-1] == 1
    async with db.transaction() as conn:
        committed = await service.commit(conn, "co_split")
    assert sorted((r.warehouse_code, r.quantity, r.state) for r in committed) == [
        ("BER", 4, "committed"),
        ("LYS", 2, "committed"),
    ]
    assert {r.id for r in committed} == {r.id for r in held}
    # Selling held units leaves what can be sold unchanged: no event. Releasing gives units back.
    events = await _stock_events(db, variant)
    assert events == [4, 7, 1]
    await reserve(db, "co_other", [(variant, 1)])
    async with db.transaction() as conn:
        (released,) = await service.release(conn, "co_other")
    assert released.warehouse_code == "LYS"
    assert (await _stock_events(db, variant))[-2:] == [0, 1]
    assert await stock_of(db, variant) == {"BER": (0, 0), "LYS": (1, 0)}
    await ledger_ok(db)


async def test_a_new_owner_reserves_without_looking_for_earlier_holds(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    """``new_owner=True`` (the caller created the owner in the same transaction) places the
    holds exactly as the checked path does, and a later call for the owner is still checked."""
    await receive(db, variant, "BER", 5)
    held = await reserve(db, "co_new", [(variant, 2)], new_owner=True)
    assert [(r.warehouse_code, r.quantity, r.state) for r in held] == [("BER", 2, "active")]
    assert [r.id for r in await reserve(db, "co_new", [(variant, 2)])] == [r.id for r in held]
    with pytest.raises(Problem) as info:
        await reserve(db, "co_new", [(variant, 3)])
    assert info.value.code == "reservation_conflict"
    with pytest.raises(Problem) as info:
        await reserve(db, "co_new_2", [(variant, 4)], new_owner=True)
    assert info.value.code == "out_of_stock"
    assert await stock_of(db, variant) == {"BER": (5, 2)}
    await ledger_ok(db)


async def test_reserve_is_idempotent_per_owner(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 10)
    first = await reserve(db, "co_1", [(variant, 4)])
    again = await reserve(db, "co_1", [(variant, 1), (variant, 3)])
    assert [r.id for r in again] == [r.id for r in first]
    assert await stock_of(db, variant) == {"BER": (10, 4)}
    with pytest.raises(Problem) as info:
        await reserve(db, "co_1", [(variant, 5)])
    assert info.value.status == 409
    assert info.value.code == "reservation_conflict"
    # Once released, the owner may hold again.
    async with db.transaction() as conn:
        await service.release(conn, "co_1")
    assert len(await reserve(db, "co_1", [(variant, 5)])) == 1
    assert await stock_of(db, variant) == {"BER": (10, 5)}


async def test_expire_due_releases_only_expired_holds(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 10)
    now = utcnow()
    await reserve(db, "co_old", [(variant, 2)], ttl_seconds=60, now=now - timedelta(minutes=5))
    await reserve(db, "co_new", [(variant, 3)], ttl_seconds=600, now=now)
    async with db.transaction() as conn:
        assert await service.expire_due(conn, now) == 1
        assert await service.expire_due(conn, now) == 0
        active = await service.active_reservations(conn)
        expired = await service.list_reservations(conn, state="expired")
    assert [r.owner for r in active] == ["co_new"]
    assert [r.owner for r in expired] == ["co_old"]
    assert await stock_of(db, variant) == {"BER": (10, 3)}
    async with db.transaction() as conn:
        assert await service.commit(conn, "co_old") == []
    await ledger_ok(db)


async def test_restock_after_a_return(db: Database, warehouses: Warehouses, variant: str) -> None:
    await receive(db, variant, "BER", 2)
    await reserve(db, "co_1", [(variant, 2)])
    async with db.transaction() as conn:
        await service.commit(conn, "co_1")
        level = await service.restock(conn, variant, "BER", 1, reference="rma_1")
    assert (level.on_hand, level.reserved) == (1, 0)
    await ledger_ok(db)


@pytest.mark.parametrize("quantity", [0, -1, 10**9])
async def test_bad_quantities_write_nothing(
    db: Database, warehouses: Warehouses, variant: str, quantity: int
) -> None:
    await receive(db, variant, "BER", 5)
    before = await snapshot(db)
    for attempt in (
        reserve(db, "co_1", [(variant, quantity)]),
        receive(db, variant, "BER", quantity),
    ):
        with pytest.raises(Problem) as info:
            await attempt
        assert info.value.status == 422
        assert info.value.code == "validation_error"
        assert "quantity" in info.value.extra["errors"][0]["field"]
    assert await snapshot(db) == before


async def test_unknown_or_unsellable_variants_and_warehouses(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    archived = (await new_variants(db, status="archived", title="Old kettle"))[0]
    await receive(db, variant, "BER", 5)
    await receive(db, archived, "BER", 5)  # the shelf count of an archived product stays true
    before = await snapshot(db)
    cases = [
        (reserve(db, "co_1", [("var_nope", 1)]), 422, "unknown_variant"),
        (reserve(db, "co_1", [(variant, 1), (archived, 1)]), 409, "variant_unavailable"),
        (reserve(db, "co_1", [(variant, 1)], warehouse="NOPE"), 422, "unknown_warehouse"),
        (reserve(db, "co_1", [(variant, 1)], country="Germany"), 422, "validation_error"),
        (reserve(db, "co_1", []), 422, "validation_error"),
        (reserve(db, "", [(variant, 1)]), 422, "validation_error"),
        (receive(db, "var_nope", "BER", 1), 422, "unknown_variant"),
        (receive(db, variant, "NOPE", 1), 422, "unknown_warehouse"),
    ]
    for attempt, status, code in cases:
        with pytest.raises(Problem) as info:
            await attempt
        assert (info.value.status, info.value.code) == (status, code)
    assert await snapshot(db) == before


async def test_duplicate_warehouse_code_is_a_conflict(db: Database, warehouses: Warehouses) -> None:
    with pytest.raises(Problem) as info:
        async with db.transaction() as conn:
            await service.create_warehouse(conn, code="ber", name="Berlin 2", countries=["DE"])
    assert (info.value.status, info.value.code) == (409, "warehouse_exists")
    async with db.transaction() as conn:
        assert [w.code for w in await service.list_warehouses(conn)] == ["BER", "LDN", "LYS"]


async def test_inactive_warehouse_is_neither_available_nor_reserved(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 5)
    await receive(db, variant, "LYS", 5)
    async with db.transaction() as conn:
        await conn.execute(
            update(service.WAREHOUSES)
            .where(service.WAREHOUSES.c.code == "LYS")
            .values(active=False)
        )
        assert await service.availability(conn, [variant]) == {variant: 5}
    with pytest.raises(Problem):
        await reserve(db, "co_1", [(variant, 6)])


async def test_ledger_check_reports_tampering(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    await receive(db, variant, "BER", 5)
    await reserve(db, "co_1", [(variant, 2)])
    await ledger_ok(db)
    async with db.transaction() as conn:
        await conn.execute(update(STOCK).values(on_hand=STOCK.c.on_hand + 1))
        await conn.execute(update(RESERVATIONS).values(quantity=1))
        (diff,) = await service.check_ledger(conn)
    assert diff.variant_id == variant
    assert (diff.on_hand, diff.expected_on_hand) == (6, 5)
    assert (diff.reserved, diff.expected_reserved, diff.ledger_reserved) == (2, 1, 2)
    assert len(diff.problems) == 2


async def test_database_refuses_negative_availability(
    db: Database, warehouses: Warehouses, variant: str
) -> None:
    from sqlalchemy.exc import IntegrityError

    await receive(db, variant, "BER", 1)
    for values in ({"reserved": 2}, {"on_hand": -1}, {"reserved": -1}):
        with pytest.raises(IntegrityError):
            async with db.transaction() as conn:
                await conn.execute(update(STOCK).values(**values))
    assert await stock_of(db, variant) == {"BER": (1, 0)}


def test_low_stock_hint() -> None:
    assert service.low_stock_hint(0, 5) is None
    assert service.low_stock_hint(3, 5) == "Only 3 left"
    assert service.low_stock_hint(5, 5) == "Only 5 left"
    assert service.low_stock_hint(6, 5) is None
