"""Demo stock: three warehouses and deterministic quantities for the demo catalog.

The same seed gives the same stock. Most variants have 10-200 units in one or two warehouses,
some only a few (so the low-stock hint shows), some none at all. Rows go in with bulk inserts,
each stock row with its ``receive`` ledger row, so ``mercato inventory check`` passes from the
start. No events are published: the demo builds its search index after seeding.
"""

from __future__ import annotations

import base64
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import DateTime, String, insert, literal, select

from mercato.db import Database, UnitOfWork, UTCDateTime, utcnow
from mercato.ids import new_id
from mercato.inventory.service import MOVEMENTS, STOCK, WAREHOUSES

DEMO_WAREHOUSES: tuple[dict[str, Any], ...] = (
    {
        "code": "BER",
        "name": "Berlin",
        "region": "Central Europe",
        "countries": ["AT", "BE", "CH", "CZ", "DE", "DK", "FR", "LU", "NL", "PL", "SE"],
    },
    {
        "code": "LYS",
        "name": "Lyon",
        "region": "Southern Europe",
        "countries": ["BE", "ES", "FR", "IT", "LU", "MC", "PT"],
    },
    {"code": "LDN", "name": "London", "region": "British Isles", "countries": ["GB", "IE"]},
)
_WEIGHTS = (0.6, 0.25, 0.15)
_BATCH = 2000
REFERENCE = "demo-seed"


_RFC4648 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_CROCKFORD = b"0123456789abcdefghjkmnpqrstvwxyz"
_TO_CROCKFORD = bytes.maketrans(_RFC4648, _CROCKFORD)


def _ids(prefix: str, count: int) -> Iterator[str]:
    """``count`` ids shaped exactly like :func:`mercato.ids.new_id`'s, made in bulk (new_id
    spends most of a large seed's time encoding one id at a time)."""
    stamp = new_id(prefix)[len(prefix) + 1 :][:10]  # the millisecond part
    noise = base64.b32encode(os.urandom(10 * count)).translate(_TO_CROCKFORD).decode()
    for i in range(count):
        yield f"{prefix}_{stamp}{noise[16 * i : 16 * i + 16]}"


def _timestamp(uow: UnitOfWork) -> Any:
    """Now, bound once per batch rather than converted for each of hundreds of thousands of
    rows (most of what a large seed would otherwise spend). SQLite gets the text SQLAlchemy
    itself would have stored; PostgreSQL takes the aware datetime as it is."""
    now = utcnow()
    if uow.is_sqlite:
        to_text = UTCDateTime().bind_processor(uow.dialect)
        assert to_text is not None
        return literal(to_text(now), String())
    return literal(now, DateTime(timezone=True))


async def _warehouse_ids(db: Database) -> list[str]:
    """The demo warehouses' ids in DEMO_WAREHOUSES order, creating those that are missing."""
    async with db.transaction() as uow:
        rows = await uow.execute(select(WAREHOUSES.c.code, WAREHOUSES.c.id))
        existing = {r.code: r.id for r in rows}
        missing = [
            {
                "id": new_id("wh"),
                "active": True,
                "created_at": utcnow(),
                **spec,
            }
            for spec in DEMO_WAREHOUSES
            if spec["code"] not in existing
        ]
        if missing:
            await uow.execute(insert(WAREHOUSES), missing)
            existing |= {m["code"]: m["id"] for m in missing}
    return [existing[spec["code"]] for spec in DEMO_WAREHOUSES]


def _quantities(rng: random.Random, warehouses: Sequence[str]) -> dict[str, int]:
    roll = rng.random()
    if roll < 0.07:
        return {}  # sold out everywhere
    first = rng.choices(warehouses, weights=_WEIGHTS)[0]
    if roll < 0.15:
        return {first: rng.randint(1, 5)}  # nearly gone: the low-stock hint shows
    found = {first: rng.randint(10, 200)}
    if rng.random() < 0.35:
        second = rng.choice([w for w in warehouses if w != first])
        found[second] = rng.randint(0, 200)
    return {w: q for w, q in found.items() if q > 0}


async def receive_bulk(
    db: Database, received: Sequence[tuple[str, str, int]], reference: str = REFERENCE
) -> None:
    """Receive stock for many (variant id, warehouse id, quantity) at once, with their ledger
    rows, into stock rows that do not exist yet: seeding, imports and benchmarks."""
    for start in range(0, len(received), _BATCH):
        chunk = [r for r in received[start : start + _BATCH] if r[2] > 0]
        if not chunk:
            continue
        ids = _ids("mov", len(chunk))
        stock = [
            {"variant_id": v, "warehouse_id": w, "on_hand": q, "reserved": 0, "version": 1}
            for v, w, q in chunk
        ]
        ledger = [
            {
                "id": next(ids),
                "variant_id": v,
                "warehouse_id": w,
                "kind": "receive",
                "quantity": q,
                "reason": None,
                "reference": reference,
            }
            for v, w, q in chunk
        ]
        async with db.transaction() as uow:
            stamp = _timestamp(uow)
            await uow.execute(insert(STOCK).values(updated_at=stamp), stock)
            await uow.execute(insert(MOVEMENTS).values(created_at=stamp), ledger)


async def seed_inventory(
    db: Database,
    variant_ids: list[str],
    seed: int,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Create the demo warehouses and receive stock for ``variant_ids`` (``progress`` is told
    how many variants each batch covered)."""
    warehouses = await _warehouse_ids(db)
    rng = random.Random(seed)
    for start in range(0, len(variant_ids), _BATCH):
        batch = variant_ids[start : start + _BATCH]
        received = [
            (variant_id, warehouse_id, quantity)
            for variant_id in batch
            for warehouse_id, quantity in _quantities(rng, warehouses).items()
        ]
        await receive_bulk(db, received)
        if progress is not None:
            progress(len(batch))
