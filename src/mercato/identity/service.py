"""Identity rules: accounts, passwords, bearer tokens, login throttling.

Choices that matter for security, and why:

* Passwords are hashed with argon2id. Hashing is deliberately slow, so it runs on a worker
  thread: on the event loop it would stall every other request of the process.
* A login for an unknown e-mail still verifies a password (against a dummy hash made with the
  same parameters) and fails with exactly the same problem as a wrong password, so neither the
  answer nor its timing tells whether an account exists.
* Tokens are random (not signed): they can be revoked one by one, and the database stores only
  their SHA-256, so a copy of the table lets no one in.
* Login attempts are throttled per client IP and per account *before* the password is checked,
  so a throttled guesser learns nothing and costs us no argon2 work.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request, Response
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from mercato import events
from mercato.db import UnitOfWork, utcnow
from mercato.identity.models import ROLES, Token, User
from mercato.ids import new_id
from mercato.problems import Problem, validation_problem
from mercato.ratelimit import TokenBucketLimiter, retry_after_header

# OWASP's recommended argon2id floor (19 MiB, 2 passes, 1 lane): about 50 ms per hash on a
# small server core, which keeps a login burst from starving the API. Raising it later is safe:
# stored hashes are upgraded on the next successful login (see ``check_needs_rehash``).
PASSWORD_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

PASSWORD_MIN_LENGTH = 10
PASSWORD_MAX_LENGTH = 256  # argon2 accepts any length; the cap keeps a request from being a DoS
EMAIL_MAX_LENGTH = 254
NAME_MAX_LENGTH = 100
TOKEN_MAX_LENGTH = 128  # a real token is 43 characters; anything far longer is not ours

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$")


@dataclass(frozen=True, slots=True)
class UserInfo:
    """A user as other modules see it (never the password hash)."""

    id: str
    email: str
    name: str
    role: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


class TokenStatus(enum.StrEnum):
    VALID = "valid"
    EXPIRED = "expired"
    REVOKED = "revoked"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class TokenCheck:
    status: TokenStatus
    user: UserInfo | None = None


LoginHook = Callable[[UnitOfWork, Request, Response, UserInfo], Awaitable[None]]

# Other modules append here (e.g. the cart merges a guest cart into the customer's). Each hook
# runs inside the login/register transaction after the credentials were accepted; a hook that
# raises undoes the whole login.
after_login_hooks: list[LoginHook] = []


def _info(user: User) -> UserInfo:
    return UserInfo(user.id, user.email, user.name, user.role, user.created_at)


# --- input rules -------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    """Why ``email`` (already normalised) is not acceptable, or None."""
    if len(email) > EMAIL_MAX_LENGTH:
        return f"must be at most {EMAIL_MAX_LENGTH} characters"
    if not _EMAIL_SHAPE.match(email):
        return "is not a valid e-mail address"
    return None


def password_problem(password: str) -> str | None:
    if len(password) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(password) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    return None


def _validate_new_user(email: str, password: str, role: str, name: str) -> None:
    if (message := email_problem(email)) is not None:
        raise validation_problem("email", message)
    if (message := password_problem(password)) is not None:
        raise validation_problem("password", message)
    if role not in ROLES:
        raise validation_problem("role", f"must be one of {', '.join(ROLES)}")
    if not name or len(name) > NAME_MAX_LENGTH:
        raise validation_problem("name", f"must be 1 to {NAME_MAX_LENGTH} characters")


# --- passwords ---------------------------------------------------------------------------


async def hash_password(password: str) -> str:
    hasher = PASSWORD_HASHER
    return await anyio.to_thread.run_sync(hasher.hash, password)


def _verify_sync(hasher: PasswordHasher, stored_hash: str, password: str) -> bool:
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored_hash: str, password: str) -> bool:
    return await anyio.to_thread.run_sync(_verify_sync, PASSWORD_HASHER, stored_hash, password)


_dummy: tuple[PasswordHasher, str] | None = None


async def _dummy_hash() -> str:
    """A hash made with the current parameters, so a miss costs what a hit costs."""
    global _dummy
    if _dummy is None or _dummy[0] is not PASSWORD_HASHER:
        hasher = PASSWORD_HASHER
        _dummy = (hasher, await anyio.to_thread.run_sync(hasher.hash, secrets.token_urlsafe(16)))
    return _dummy[1]


# --- users -------------------------------------------------------------------------------


def email_taken() -> Problem:
    return Problem(409, "email_taken", "An account with this e-mail address already exists")


async def create_user(
    uow: UnitOfWork, *, email: str, password: str, role: str, name: str
) -> UserInfo:
    """Create an account (any role) and publish ``UserRegistered`` in the same transaction."""
    email, name = normalize_email(email), name.strip()
    _validate_new_user(email, password, role, name)
    if await uow.scalar(select(User.id).where(User.email == email)) is not None:
        raise email_taken()
    user = User(
        id=new_id("usr"),
        email=email,
        name=name,
        password_hash=await hash_password(password),
        role=role,
        created_at=utcnow(),
    )
    uow.add(user)
    try:
        await uow.flush()
    except IntegrityError as exc:  # a concurrent registration won the race for this e-mail
        raise email_taken() from exc
    await events.publish(
        uow,
        "UserRegistered",
        user.id,
        {"user_id": user.id, "email": user.email, "name": user.name, "role": user.role},
    )
    return _info(user)


async def get_user(uow: UnitOfWork, user_id: str) -> UserInfo | None:
    user = await uow.get(User, user_id)
    return None if user is None else _info(user)


async def get_user_by_email(uow: UnitOfWork, email: str) -> UserInfo | None:
    user = await uow.scalar(select(User).where(User.email == normalize_email(email)))
    return None if user is None else _info(user)


def invalid_credentials() -> Problem:
    # One body for "no such account" and "wrong password": telling them apart would let anyone
    # probe which e-mail addresses have accounts.
    return Problem(401, "invalid_credentials", "The e-mail address or password is incorrect")


async def authenticate_credentials(uow: UnitOfWork, email: str, password: str) -> UserInfo | None:
    """The user whose credentials these are, or None; upgrades an outdated password hash."""
    user = await uow.scalar(select(User).where(User.email == normalize_email(email)))
    if user is None:
        await verify_password(await _dummy_hash(), password)
        return None
    if not await verify_password(user.password_hash, password):
        return None
    if PASSWORD_HASHER.check_needs_rehash(user.password_hash):
        user.password_hash = await hash_password(password)
        await uow.flush()
    return _info(user)


async def set_password(uow: UnitOfWork, user_id: str, password: str) -> None:
    """Replace a password and sign the user out everywhere (old tokens may be in wrong hands)."""
    if (message := password_problem(password)) is not None:
        raise validation_problem("password", message)
    new_hash = await hash_password(password)
    changed = await uow.changed(
        update(User).where(User.id == user_id).values(password_hash=new_hash)
    )
    if changed == 0:
        raise Problem(404, "not_found", f"user {user_id!r} was not found", title="Not found")
    await revoke_user_tokens(uow, user_id)


async def enforce_login_rate(
    limiter: TokenBucketLimiter,
    *,
    ip: str,
    email: str,
    capacity: int,
    refill_per_second: float,
) -> None:
    """Raise 429 ``rate_limited`` when this IP or this account has used up its attempts.

    Per IP stops one client spraying many accounts; per account stops many clients (a botnet)
    guessing one password.
    """
    ip_ok, ip_wait = await limiter.take(f"login:ip:{ip}", capacity, refill_per_second)
    acct_ok, acct_wait = await limiter.take(
        f"login:acct:{normalize_email(email)}", capacity, refill_per_second
    )
    if ip_ok and acct_ok:
        return
    wait = max(ip_wait, acct_wait)
    raise Problem(
        429,
        "rate_limited",
        "Too many login attempts; try again later",
        title="Too many requests",
        headers={"Retry-After": retry_after_header(wait)},
        retry_after=int(retry_after_header(wait)),
    )


async def run_login_hooks(
    uow: UnitOfWork, request: Request, response: Response, user: UserInfo
) -> None:
    for hook in list(after_login_hooks):
        await hook(uow, request, response, user)


# --- tokens ------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


async def start_session(
    uow: UnitOfWork,
    user_id: str,
    ttl_seconds: int,
    *,
    user_agent: str | None = None,
    ip: str | None = None,
) -> IssuedToken:
    """Issue a bearer token for ``user_id``; a non-positive TTL gives an already expired one."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + timedelta(seconds=ttl_seconds)
    uow.add(
        Token(
            id=new_id("tok"),
            user_id=user_id,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            user_agent=user_agent[:255] if user_agent else None,
            ip=ip[:45] if ip else None,
        )
    )
    await uow.flush()
    return IssuedToken(token, expires_at)


async def issue_token(uow: UnitOfWork, user_id: str, ttl_seconds: int) -> str:
    return (await start_session(uow, user_id, ttl_seconds)).token


# Every authenticated request checks its token: a prebuilt Core statement of exactly the columns
# the answer needs (never the password hash), so a check binds one value and loads no entities.
_TOKENS: Table = Token.__table__  # type: ignore[assignment]
_USERS: Table = User.__table__  # type: ignore[assignment]
_TOKEN_CHECK = (
    select(
        _TOKENS.c.expires_at,
        _TOKENS.c.revoked_at,
        _USERS.c.id,
        _USERS.c.email,
        _USERS.c.name,
        _USERS.c.role,
        _USERS.c.created_at,
    )
    .join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("token_hash"))
)


async def check_token(uow: UnitOfWork, token: str) -> TokenCheck:
    """Why a token is or is not good; reads only, so a rejected token writes nothing."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return TokenCheck(TokenStatus.INVALID)
    row = (await uow.execute(_TOKEN_CHECK, {"token_hash": hash_token(token)})).first()
    if row is None:
        return TokenCheck(TokenStatus.INVALID)
    if row.revoked_at is not None:
        return TokenCheck(TokenStatus.REVOKED)
    if row.expires_at <= utcnow():
        return TokenCheck(TokenStatus.EXPIRED)
    return TokenCheck(
        TokenStatus.VALID, UserInfo(row.id, row.email, row.name, row.role, row.created_at)
    )


async def authenticate_token(uow: UnitOfWork, token: str) -> UserInfo | None:
    return (await check_token(uow, token)).user


async def revoke_token(uow: UnitOfWork, token: str) -> bool:
    """Revoke one token; False when it was unknown or already revoked."""
    revoked = await uow.changed(
        update(Token)
        .where(Token.token_hash == hash_token(token), Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(revoked)


async def revoke_user_tokens(uow: UnitOfWork, user_id: str) -> int:
    """Sign a user out everywhere; returns how many live tokens were revoked."""
    return await uow.changed(
        update(Token)
        .where(Token.user_id == user_id, Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def purge_tokens(uow: UnitOfWork, older_than: timedelta) -> int:
    """Delete tokens that expired more than ``older_than`` ago (they can never be used)."""
    return await uow.changed(delete(Token).where(Token.expires_at < utcnow() - older_than))
