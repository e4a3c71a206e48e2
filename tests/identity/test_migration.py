"""Identity's schema, and migration 0016: addresses stored under the earlier rule (trimmed and
lower-cased only) become normalised; two accounts with one normalised address are reported,
not merged."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from mercato.db import Base, Database, UTCDateTime, utcnow
from mercato.identity import service
from mercato.migrate import alembic_config, upgrade
from mercato.modules import load_models
from tests.identity.support import PASSWORD

USERS = sa.table(
    "identity_users",
    sa.column("id", sa.String),
    sa.column("email", sa.String),
    sa.column("name", sa.String),
    sa.column("password_hash", sa.String),
    sa.column("role", sa.String),
    sa.column("created_at", UTCDateTime()),
)
TOKENS = sa.table(
    "identity_tokens",
    sa.column("id", sa.String),
    sa.column("user_id", sa.String),
    sa.column("token_hash", sa.String),
    sa.column("created_at", UTCDateTime()),
    sa.column("expires_at", UTCDateTime()),
)


def _identity_diff(conn: Connection) -> list[Any]:
    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table":
            return bool(name and name.startswith("identity_"))
        table = getattr(obj, "table", None)
        return table is None or str(table.name).startswith("identity_")

    context = MigrationContext.configure(
        conn, opts={"compare_type": True, "include_object": include}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_make_the_schema_the_models_describe(db: Database) -> None:
    load_models()
    async with db.engine.connect() as conn:
        assert await conn.run_sync(_identity_diff) == []


async def migrate_to(db: Database, revision: str) -> None:
    await db.engine.dispose()
    if revision == "head":
        upgrade(db.url)
    else:
        await asyncio.to_thread(command.downgrade, alembic_config(db.url), revision)
    await db.engine.dispose()


async def test_addresses_are_normalised_and_collisions_reported(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate_to(db, "0015_orders_workflows")
    start = utcnow() - timedelta(days=30)
    rows = [
        # (id, address as stored, days after start)
        ("usr_alice_fw", "\uff41lice@example.com", 0),  # the older one, in full-width letters
        ("usr_alice", "alice@example.com", 1),  # already normal: keeps the address
        ("usr_bob", "\uff22\uff2f\uff22@example.com", 2),  # alone: rewritten
        ("usr_carol_new", "\uff43\uff41rol@example.com", 4),
        ("usr_carol_old", "\uff43arol@example.com", 3),  # neither normal: the oldest keeps it
        ("usr_dave", "dave@example.com", 5),
    ]
    async with db.transaction() as uow:
        for user_id, email, days in rows:
            await uow.execute(
                sa.insert(USERS).values(
                    id=user_id,
                    email=email,
                    name=user_id,
                    password_hash=await service.hash_password(PASSWORD),
                    role="customer",
                    created_at=start + timedelta(days=days),
                )
            )
        await uow.execute(
            sa.insert(TOKENS).values(
                id="tok_1",
                user_id="usr_alice",
                token_hash="0" * 64,
                created_at=start,
                expires_at=utcnow() + timedelta(days=1),
            )
        )

    with caplog.at_level(logging.WARNING):
        await migrate_to(db, "head")

    async with db.transaction() as uow:
        stored = dict((await uow.execute(sa.select(USERS.c.id, USERS.c.email))).all())
        sessions = (await uow.execute(sa.select(TOKENS.c.id))).scalars().all()
        found = {
            email: await service.get_user_by_email(uow, email)
            for email in ("ALICE@example.com", "bob@example.com", "carol@example.com")
        }
    assert stored == {
        "usr_alice_fw": "\uff41lice@example.com",
        "usr_alice": "alice@example.com",
        "usr_bob": "bob@example.com",
        "usr_carol_new": "\uff43\uff41rol@example.com",
        "usr_carol_old": "carol@example.com",
        "usr_dave": "dave@example.com",
    }
    assert sessions == ["tok_1"]  # nothing else in the tables was touched
    assert {k: v.id if v else None for k, v in found.items()} == {
        "ALICE@example.com": "usr_alice",
        "bob@example.com": "usr_bob",
        "carol@example.com": "usr_carol_old",
    }
    reported = [r.getMessage() for r in caplog.records if "normalised e-mail" in r.getMessage()]
    assert len(reported) == 2
    assert any("usr_alice_fw" in m and "as usr_alice:" in m for m in reported)
    assert any("usr_carol_new" in m and "usr_carol_old" in m for m in reported)
