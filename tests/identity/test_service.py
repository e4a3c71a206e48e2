"""The identity service as other modules call it (no HTTP)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner, Result

from mercato.cli import app as cli
from mercato.db import Database, utcnow
from mercato.identity import service
from mercato.identity.events import purge_expired_tokens
from mercato.identity.models import Token, User
from mercato.identity.service import TokenStatus, UserInfo
from mercato.problems import Problem
from mercato.runtime import Runtime
from tests.identity.support import PASSWORD


async def _make(db: Database, email: str = "ada@example.com", role: str = "customer") -> UserInfo:
    async with db.transaction() as session:
        return await service.create_user(
            session, email=email, password=PASSWORD, role=role, name="Ada"
        )


async def test_create_and_find_users(db: Database) -> None:
    user = await _make(db, email=" Ada@Example.com", role="seller")
    assert user.email == "ada@example.com"
    assert user.role == "seller"
    assert user.created_at.tzinfo is not None
    async with db.transaction() as session:
        assert await service.get_user(session, user.id) == user
        assert await service.get_user_by_email(session, "ADA@example.com ") == user
        assert await service.get_user(session, "usr_missing") is None
        assert await service.get_user_by_email(session, "nobody@example.com") is None


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"email": "nope"}, "email"),
        ({"password": "short"}, "password"),
        ({"role": "admin"}, "role"),
        ({"name": "  "}, "name"),
    ],
)
async def test_create_user_refuses_bad_input(
    db: Database, kwargs: dict[str, str], field: str
) -> None:
    args = {"email": "ada@example.com", "password": PASSWORD, "role": "customer", "name": "Ada"}
    args.update(kwargs)
    with pytest.raises(Problem) as caught:
        async with db.transaction() as session:
            await service.create_user(session, **args)
    assert caught.value.status == 422
    assert caught.value.extra["errors"][0]["field"] == field
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_duplicate_email_is_refused(db: Database) -> None:
    await _make(db)
    with pytest.raises(Problem) as caught:
        async with db.transaction() as session:
            await service.create_user(
                session, email="ADA@example.com", password=PASSWORD, role="staff", name="Twin"
            )
    assert (caught.value.status, caught.value.code) == (409, "email_taken")


async def test_the_database_refuses_unknown_roles(db: Database) -> None:
    with pytest.raises(IntegrityError):
        async with db.transaction() as session:
            await session.execute(
                insert(User).values(
                    id="usr_x",
                    email="x@example.com",
                    name="X",
                    password_hash="-",
                    role="admin",
                    created_at=utcnow(),
                )
            )


async def test_credentials(db: Database) -> None:
    user = await _make(db)
    async with db.transaction() as session:
        assert await service.authenticate_credentials(session, "ADA@example.com", PASSWORD) == user
        assert await service.authenticate_credentials(session, "ada@example.com", "nope") is None
        assert await service.authenticate_credentials(session, "x@example.com", PASSWORD) is None


async def test_token_lifecycle(db: Database) -> None:
    user = await _make(db)
    async with db.transaction() as session:
        issued = await service.start_session(session, user.id, 60, user_agent="ua" * 500, ip="::1")
        token = issued.token
    assert issued.expires_at > utcnow()
    async with db.transaction() as session:
        assert await service.authenticate_token(session, token) == user
        assert (await service.check_token(session, "nope")).status is TokenStatus.INVALID
        assert (await service.check_token(session, "")).status is TokenStatus.INVALID
        assert await service.revoke_token(session, token) is True
        assert await service.revoke_token(session, token) is False  # already revoked
        assert await service.revoke_token(session, "never-issued") is False
    async with db.transaction() as session:
        check = await service.check_token(session, token)
        assert (check.status, check.user) == (TokenStatus.REVOKED, None)
        assert await service.authenticate_token(session, token) is None


async def test_expiry(db: Database) -> None:
    user = await _make(db)
    async with db.transaction() as session:
        expired = await service.issue_token(session, user.id, ttl_seconds=0)
        check = await service.check_token(session, expired)
    assert (check.status, check.user) == (TokenStatus.EXPIRED, None)


async def test_set_password_signs_out_everywhere(db: Database) -> None:
    user = await _make(db)
    async with db.transaction() as session:
        token = await service.issue_token(session, user.id, 3600)
    async with db.transaction() as session:
        await service.set_password(session, user.id, "a brand new password")
    async with db.transaction() as session:
        assert await service.authenticate_token(session, token) is None
        assert await service.authenticate_credentials(session, user.email, PASSWORD) is None
        assert (
            await service.authenticate_credentials(session, user.email, "a brand new password")
            == user
        )
    with pytest.raises(Problem):
        async with db.transaction() as session:
            await service.set_password(session, user.id, "short")


async def test_purge_job_forgets_long_expired_tokens(runtime: Runtime) -> None:
    user = await _make(runtime.db)
    async with runtime.db.transaction() as session:
        old = await service.issue_token(session, user.id, 60)
        recent = await service.issue_token(session, user.id, -60)
        live = await service.issue_token(session, user.id, 3600)
        await session.execute(
            update(Token)
            .where(Token.token_hash == service.hash_token(old))
            .values(expires_at=utcnow() - timedelta(days=31))
        )
    assert await purge_expired_tokens(runtime) == 1
    async with runtime.db.transaction() as session:
        left = set((await session.scalars(select(Token.token_hash))).all())
    assert left == {service.hash_token(recent), service.hash_token(live)}


async def test_cli_creates_a_staff_user(database_url: str, runtime: Runtime) -> None:
    def run(*args: str) -> Result:
        # The command runs its own event loop, so it goes on a thread of its own.
        return CliRunner().invoke(cli, ["identity", "create-user", *args])

    args = ["--email", "Boss@Example.com", "--name", "Boss", "--password", PASSWORD]
    args += ["--database", database_url]
    result = await asyncio.to_thread(run, *args, "--role", "staff")
    assert result.exit_code == 0, result.output
    assert "boss@example.com" in result.output
    async with runtime.db.transaction() as session:
        user = await service.authenticate_credentials(session, "boss@example.com", PASSWORD)
    assert user is not None and user.role == "staff"

    again = await asyncio.to_thread(run, *args, "--role", "seller")
    assert again.exit_code == 1
    assert "already exists" in again.output

    bad_role = await asyncio.to_thread(run, *args, "--role", "admin")
    assert bad_role.exit_code == 2
    short = ["--email", "x@example.com", "--name", "X", "--password", "short"]
    too_short = await asyncio.to_thread(run, *short, "--database", database_url)
    assert too_short.exit_code == 1
    async with runtime.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 1
