"""The sign-in cache: a good token is remembered for a moment by the process that checked it,
and forgotten at once when this process changes what the check would say."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from mercato.db import Database, utcnow
from mercato.identity import service
from mercato.identity.models import Token
from mercato.identity.service import SignInCache, TokenStatus
from tests.identity.support import PASSWORD


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _signed_in(db: Database, email: str = "ada@example.com") -> tuple[str, str]:
    async with db.transaction() as uow:
        user = await service.create_user(
            uow, email=email, password=PASSWORD, role="customer", name="Ada"
        )
        return user.id, await service.issue_token(uow, user.id, 3600)


async def test_changes_made_here_are_seen_at_once(db: Database) -> None:
    cache = SignInCache(5.0, clock=Clock())
    ada, token = await _signed_in(db)
    _, other = await _signed_in(db, "bob@example.com")
    assert (await cache.check(db, token)).user.role == "customer"  # type: ignore[union-attr]
    assert (await cache.check(db, other)).status is TokenStatus.VALID

    async with db.transaction() as uow:
        await service.set_role(uow, ada, "seller")
    assert (await cache.check(db, token)).user.role == "seller"  # type: ignore[union-attr]

    async with db.transaction() as uow:
        assert await service.revoke_token(uow, token)  # a logout
    assert (await cache.check(db, token)).status is TokenStatus.REVOKED
    assert (await cache.check(db, other)).status is TokenStatus.VALID

    _, second = await _signed_in(db, "cy@example.com")
    async with db.transaction() as uow:
        cy = (await service.check_token(uow, second)).user
        assert cy is not None
        await service.revoke_user_tokens(uow, cy.id)  # a password reset: signed out everywhere
    assert (await cache.check(db, second)).status is TokenStatus.REVOKED


async def test_a_change_made_elsewhere_is_seen_within_the_cache_time(db: Database) -> None:
    """Another process revoking the token (here: the row changed behind this process's back)
    is honoured once the entry runs out, never later; unknown tokens are never remembered."""
    clock = Clock()
    cache = SignInCache(5.0, clock=clock)
    _, token = await _signed_in(db)
    assert (await cache.check(db, token)).status is TokenStatus.VALID
    async with db.transaction() as uow:
        await uow.execute(update(Token).values(revoked_at=utcnow()))
    clock.now += 4.9
    assert (await cache.check(db, token)).status is TokenStatus.VALID
    clock.now += 0.2
    assert (await cache.check(db, token)).status is TokenStatus.REVOKED
    assert (await cache.check(db, "never-issued")).status is TokenStatus.INVALID

    off = SignInCache(0.0, clock=clock)  # turned off: every check reads the database
    _, fresh = await _signed_in(db, "bob@example.com")
    assert (await off.check(db, fresh)).status is TokenStatus.VALID
    async with db.transaction() as uow:
        await uow.execute(update(Token).values(revoked_at=utcnow()))
    assert (await off.check(db, fresh)).status is TokenStatus.REVOKED


async def test_a_check_racing_a_revocation_is_not_kept(db: Database) -> None:
    """A check that reads the token while its revocation is being committed (so still sees it
    good) must not keep what it read once the revocation has committed."""
    if db.is_sqlite:
        pytest.skip("SQLite: a check waits for the revocation's write lock, there is no race")
    cache = SignInCache(5.0, clock=Clock())
    _, token = await _signed_in(db)
    async with db.transaction() as uow:
        await service.revoke_token(uow, token)
        assert (await cache.check(db, token)).status is TokenStatus.VALID  # not committed yet
    assert (await cache.check(db, token)).status is TokenStatus.REVOKED
