"""Catalog test helpers: row counts (to prove nothing was written) and a small catalog."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from mercato.catalog.models import Brand, Category, Product, Variant
from mercato.events import OutboxEvent
from mercato.runtime import Runtime
from tests.factories import make_brand, make_category


async def row_counts(app: FastAPI) -> dict[str, int]:
    """Rows in every catalog table and the outbox."""
    runtime: Runtime = app.state.runtime
    counts: dict[str, int] = {}
    async with runtime.db.transaction() as session:
        for model in (Category, Brand, Product, Variant, OutboxEvent):
            table = model.__table__
            counts[table.name] = int(  # type: ignore[attr-defined]
                await session.scalar(select(func.count()).select_from(table)) or 0
            )
    return counts


async def event_types(app: FastAPI, aggregate_id: str | None = None) -> list[str]:
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        query = select(OutboxEvent.type).order_by(OutboxEvent.seq)
        if aggregate_id is not None:
            query = query.where(OutboxEvent.aggregate_id == aggregate_id)
        return list((await session.scalars(query)).all())


@dataclass(frozen=True)
class SmallCatalog:
    electronics: str
    audio: str
    headphones: str
    kitchen: str
    kettles: str
    acme: str
    nordhaven: str


@pytest.fixture
async def small_catalog(app: FastAPI) -> SmallCatalog:
    """Electronics > Audio > Headphones, Home & Kitchen > Kettles, brands Acme and Nordhaven."""
    runtime: Runtime = app.state.runtime
    async with runtime.db.transaction() as session:
        electronics = await make_category(session, "Electronics")
        audio = await make_category(session, "Audio", "electronics")
        headphones = await make_category(session, "Headphones", "audio")
        kitchen = await make_category(session, "Home & Kitchen", slug="home-kitchen")
        kettles = await make_category(session, "Kettles", "home-kitchen")
        acme = await make_brand(session, "Acme")
        nordhaven = await make_brand(session, "Nordhaven")
    return SmallCatalog(
        electronics.id, audio.id, headphones.id, kitchen.id, kettles.id, acme.id, nordhaven.id
    )
