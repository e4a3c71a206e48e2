"""Identity rules: accounts, passwords, bearer tokens, login throttling, and the mailed links
that reset a password or verify an address.

Choices that matter for security, and why:

* Passwords are hashed with argon2id. Hashing is deliberately slow, so it runs on a worker
  thread: on the event loop it would stall every other request of the process.
* A login for an unknown e-mail still verifies a password (against a dummy hash made with the
  same parameters) and fails with exactly the same problem as a wrong password, so neither the
  answer nor its timing tells whether an account exists.
* Tokens are random (not signed): they can be revoked one by one, and the database stores only
  their SHA-256, so a copy of the table lets no one in.
* Only failed logins spend an allowance, and an attempt that a limit refuses is refused before
  the password is looked at (no argon2 work, nothing learnt); the limits are such that no
  stranger can lock an owner out (:mod:`~mercato.identity.login_limits`).
* E-mail addresses are normalised (Unicode NFKC, case-folded) wherever one comes in, so that
  an address typed in full-width letters and the same address in capitals are one account.
* A password reset is asked for by address and answered the same way whether or not an account
  has it; the link it mails is single-use, expires, and is never stored in clear
  (:mod:`~mercato.identity.account_tokens`). Setting a password by any route signs the user
  out everywhere else.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
import time
import unicodedata
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Request, Response
from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.exc import IntegrityError

from mercato import events
from mercato.db import Database, UnitOfWork, utcnow
from mercato.identity import account_tokens, addresses, destinations, login_limits
from mercato.identity.account_tokens import RESET_PASSWORD, VERIFY_EMAIL, AccountTokenInfo
from mercato.identity.login_limits import LoginRates
from mercato.identity.models import ROLES, Token, User
from mercato.ids import new_id
from mercato.problems import Problem, validation_problem
from mercato.ratelimit import Rate, TokenBucketLimiter, client_ip, throttle
from mercato.runtime import Runtime
from mercato.settings import Settings

# A customer's address book (see addresses.py).
MAX_ADDRESSES = addresses.MAX_ADDRESSES
AddressFields = addresses.AddressFields
AddressInfo = addresses.AddressInfo
add_address = addresses.add_address
default_address = addresses.default_address
default_address_country = addresses.default_address_country
delete_address = addresses.delete_address
get_address = addresses.get_address
list_addresses = addresses.list_addresses
make_default_address = addresses.make_default_address
update_address = addresses.update_address

# Where a shopper's goods would go (see destinations.py; this file is the module's face).
Destination = destinations.Destination
check_served = destinations.check_served
country_name = destinations.country_name
default_country_readers = destinations.default_country_readers
destination_and_choices = destinations.destination_and_choices
not_served = destinations.not_served
parse_country = destinations.parse_country
resolve_destination = destinations.resolve_destination
served_countries = destinations.served_countries
served_country_readers = destinations.served_country_readers

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
    # When the owner proved the address by a mailed link; None until then.
    email_verified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A session just started: the user and the token (for the body and the cookie)."""

    user: UserInfo
    session: IssuedToken


@dataclass(frozen=True, slots=True)
class AccountMail:
    """What a mailed link needs (for the notifications module, which writes the mail)."""

    token_id: str
    purpose: str
    user_id: str
    name: str
    email: str
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

VerifiedEmailHook = Callable[[UnitOfWork, UserInfo], Awaitable[object]]

# Other modules append here (the orders module gives an account the guest orders placed with its
# address). Each hook runs, and must be idempotent, in the transaction that verifies an address
# and in every login of an account whose address is verified: an address is only trusted as the
# account's once its owner proved they read it.
verified_email_hooks: list[VerifiedEmailHook] = []


def _info(user: User) -> UserInfo:
    return UserInfo(
        user.id, user.email, user.name, user.role, user.created_at, user.email_verified_at
    )


def _hourly(count: int) -> Rate:
    return Rate(count, count / 3600)


# --- input rules -------------------------------------------------------------------------


def normalize_email(email: str) -> str:
    """The one spelling of an address under which its account is stored and found: Unicode
    NFKC (full-width letters, ligatures and the like become their plain forms), case-folded,
    trimmed. Folding the local part too is a choice: no mail provider in use tells ``Ada`` from
    ``ada``, and two accounts for them would only confuse their owner."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).casefold()).strip()


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
    uow: UnitOfWork,
    *,
    email: str,
    password: str,
    role: str,
    name: str,
    password_hash: str | None = None,
) -> UserInfo:
    """Create an account (any role) and publish ``UserRegistered`` in the same transaction.

    ``password_hash``: the :func:`hash_password` of ``password``, made once by a caller
    creating many accounts with one password (the demo's customers), instead of hashing again.
    """
    email, name = normalize_email(email), name.strip()
    _validate_new_user(email, password, role, name)
    if await uow.scalar(select(User.id).where(User.email == email)) is not None:
        raise email_taken()
    user = User(
        id=new_id("usr"),
        email=email,
        name=name,
        password_hash=password_hash or await hash_password(password),
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


async def set_role(uow: UnitOfWork, user_id: str, role: str) -> UserInfo | None:
    """Give an account another role (staff's decision, never the account's own: a marketplace
    seller's applicant becomes a ``seller`` when staff approve the seller). ``None`` when there
    is no such account."""
    if role not in ROLES:
        raise validation_problem("role", f"must be one of {', '.join(ROLES)}")
    user = await uow.get(User, user_id)
    if user is None:
        return None
    user.role = role
    await uow.flush()
    forget_sign_ins(uow, user_id=user_id)
    return _info(user)


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
    await account_tokens.retire(uow, user_id, RESET_PASSWORD)


async def change_password(
    uow: UnitOfWork,
    limiter: TokenBucketLimiter,
    settings: Settings,
    user_id: str,
    *,
    current_password: str,
    new_password: str,
    keep_token: str | None,
) -> int:
    """The signed-in user sets a new password, proving the current one (so a session left open
    somewhere is not enough to take the account over). Every other session is signed out; the
    one presenting ``keep_token`` stays. Returns how many sessions were signed out."""
    await throttle(
        limiter,
        {f"password-change:user:{user_id}": _hourly(settings.password_change_per_user_per_hour)},
        detail="Too many attempts to change the password; try again later",
    )
    if (message := password_problem(new_password)) is not None:
        raise validation_problem("new_password", message)
    if new_password == current_password:
        raise validation_problem("new_password", "must differ from the current password")
    new_hash = await hash_password(new_password)  # before the row is read (and, on SQLite, locked)
    user = await uow.get(User, user_id)
    if user is None:
        raise Problem(404, "not_found", f"user {user_id!r} was not found", title="Not found")
    if len(current_password) > PASSWORD_MAX_LENGTH or not await verify_password(
        user.password_hash, current_password
    ):
        raise validation_problem("current_password", "is not your current password")
    user.password_hash = new_hash
    await uow.flush()
    await account_tokens.retire(uow, user_id, RESET_PASSWORD)
    others = update(Token).where(Token.user_id == user_id, Token.revoked_at.is_(None))
    if keep_token:
        others = others.where(Token.token_hash != hash_token(keep_token))
    forget_sign_ins(uow, user_id=user_id)
    return await uow.changed(others.values(revoked_at=utcnow()))


# --- mailed links: password reset, e-mail verification --------------------------------------


def invalid_link() -> Problem:
    # One answer for unknown, used, expired and replaced links: which one it was helps no one.
    return Problem(
        400,
        "invalid_token",
        "This link is not valid: it has been used, has expired or was replaced by a newer one",
        title="Invalid link",
    )


async def request_password_reset(
    uow: UnitOfWork, limiter: TokenBucketLimiter, settings: Settings, *, email: str, ip: str
) -> None:
    """Mail a password reset link to ``email`` if an account has that address.

    The caller answers the same whether or not one does (this returns nothing that tells), and
    neither path does slow work: the mail is written and sent by the worker. Throttled per
    client IP and per address (so no one can flood someone's mailbox)."""
    email = normalize_email(email)
    address = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    await throttle(
        limiter,
        {
            f"reset:ip:{ip}": _hourly(settings.password_reset_per_ip_per_hour),
            f"reset:addr:{address}": _hourly(settings.password_reset_per_address_per_hour),
        },
        detail="Too many password reset requests; try again later",
    )
    user = await uow.scalar(select(User).where(User.email == email))
    if user is None:
        return
    token = await account_tokens.issue(
        uow,
        secret_key=settings.secret_key,
        user_id=user.id,
        email=user.email,
        purpose=RESET_PASSWORD,
        ttl_seconds=settings.password_reset_ttl_seconds,
    )
    await events.publish(
        uow, "PasswordResetRequested", user.id, {"user_id": user.id, "token_id": token.id}
    )


async def _throttle_links(limiter: TokenBucketLimiter, settings: Settings, ip: str) -> None:
    await throttle(
        limiter,
        {f"account-link:ip:{ip}": _hourly(settings.account_link_per_ip_per_hour)},
        detail="Too many links tried from this address; try again later",
    )


async def _redeem_link(uow: UnitOfWork, token: str, purpose: str) -> User:
    used = await account_tokens.redeem(uow, token, purpose)
    user = None if used is None else await uow.get(User, used.user_id)
    # A link proves the address it was mailed to, not whatever the account's address is now.
    if used is None or user is None or user.email != used.email:
        raise invalid_link()
    return user


async def reset_password(
    uow: UnitOfWork,
    limiter: TokenBucketLimiter,
    settings: Settings,
    *,
    token: str,
    new_password: str,
    ip: str,
) -> UserInfo:
    """Set a new password with a mailed reset link (used up by this), and sign the user out
    everywhere: whoever had the old password may hold a session. Following the link also
    proves the address, so an unverified one becomes verified."""
    if (message := password_problem(new_password)) is not None:
        raise validation_problem("password", message)
    await _throttle_links(limiter, settings, ip)
    new_hash = await hash_password(new_password)  # before the write lock, not under it
    user = await _redeem_link(uow, token, RESET_PASSWORD)
    user.password_hash = new_hash
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    await uow.flush()
    await revoke_user_tokens(uow, user.id)
    return _info(user)


async def _mail_verification(uow: UnitOfWork, settings: Settings, user: UserInfo) -> None:
    token = await account_tokens.issue(
        uow,
        secret_key=settings.secret_key,
        user_id=user.id,
        email=user.email,
        purpose=VERIFY_EMAIL,
        ttl_seconds=settings.email_verification_ttl_seconds,
    )
    await events.publish(
        uow, "EmailVerificationRequested", user.id, {"user_id": user.id, "token_id": token.id}
    )


async def resend_verification(
    uow: UnitOfWork, limiter: TokenBucketLimiter, settings: Settings, user_id: str
) -> None:
    """Mail a new verification link (the earlier ones stop working); 409 when the address is
    verified already. Throttled per user."""
    await throttle(
        limiter,
        {f"verify-mail:user:{user_id}": _hourly(settings.verification_mail_per_user_per_hour)},
        detail="Too many verification mails asked for; try again later",
    )
    user = await get_user(uow, user_id)
    if user is None:
        raise Problem(404, "not_found", f"user {user_id!r} was not found", title="Not found")
    if user.email_verified_at is not None:
        raise Problem(
            409, "already_verified", "This e-mail address is verified already", title="Conflict"
        )
    await _mail_verification(uow, settings, user)


async def verify_email(
    uow: UnitOfWork, limiter: TokenBucketLimiter, settings: Settings, *, token: str, ip: str
) -> UserInfo:
    """Mark the address a mailed verification link was sent to as verified (publishes
    ``UserEmailVerified`` the first time)."""
    await _throttle_links(limiter, settings, ip)
    user = await _redeem_link(uow, token, VERIFY_EMAIL)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
        await uow.flush()
        forget_sign_ins(uow, user_id=user.id)
        await events.publish(
            uow, "UserEmailVerified", user.id, {"user_id": user.id, "email": user.email}
        )
    verified = _info(user)
    await run_verified_email_hooks(uow, verified)
    return verified


async def account_mail(uow: UnitOfWork, token_id: str) -> AccountMail | None:
    """What the mail for token ``token_id`` needs; None when the token can no longer be used
    (redeemed, expired, replaced) or its address is no longer the account's."""
    token: AccountTokenInfo | None = await account_tokens.usable(uow, token_id)
    user = None if token is None else await uow.get(User, token.user_id)
    if token is None or user is None or user.email != token.email:
        return None
    return AccountMail(token.id, token.purpose, user.id, user.name, user.email, token.expires_at)


def account_link_token(secret_key: str, token_id: str) -> str:
    """The token a mailed link carries (derived again when the mail is sent)."""
    return account_tokens.token_value(secret_key, token_id)


async def log_in(
    uow: UnitOfWork,
    limiter: TokenBucketLimiter,
    settings: Settings,
    request: Request,
    response: Response,
    *,
    email: str,
    password: str,
) -> SignedIn:
    """Check e-mail and password under the failed-login limits, then start a session (and run
    the login hooks). 429 ``rate_limited`` before any password work when a limit refuses, 401
    ``invalid_credentials`` for a wrong password or an unknown address alike."""
    email = normalize_email(email)
    charges = await login_limits.admit(
        limiter, LoginRates.of(settings), email=email, ip=client_ip(request)
    )
    user = None
    if len(password) <= PASSWORD_MAX_LENGTH:
        user = await authenticate_credentials(uow, email, password)
    if user is None:
        raise invalid_credentials()  # the charges stand: this is what the limits count
    await login_limits.give_back(limiter, charges)
    return await sign_in(uow, settings, request, response, user)


async def sign_in(
    uow: UnitOfWork, settings: Settings, request: Request, response: Response, user: UserInfo
) -> SignedIn:
    """Start a session for ``user`` (credentials already accepted) and run the login hooks."""
    issued = await start_session(
        uow,
        user.id,
        settings.token_ttl_seconds,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )
    await run_login_hooks(uow, request, response, user)
    await run_verified_email_hooks(uow, user)
    return SignedIn(user, issued)


async def register(
    uow: UnitOfWork,
    limiter: TokenBucketLimiter,
    settings: Settings,
    request: Request,
    response: Response,
    *,
    email: str,
    password: str,
    name: str,
) -> SignedIn:
    """Self sign-up (always a customer), throttled per client IP: the account, a verification
    mail for its address, and a session."""
    ip = client_ip(request)
    await throttle(
        limiter,
        {f"register:ip:{ip}": _hourly(settings.register_per_ip_per_hour)},
        detail="Too many accounts created from this address; try again later",
    )
    user = await create_user(uow, email=email, password=password, role="customer", name=name)
    await _mail_verification(uow, settings, user)
    return await sign_in(uow, settings, request, response, user)


async def run_login_hooks(
    uow: UnitOfWork, request: Request, response: Response, user: UserInfo
) -> None:
    for hook in list(after_login_hooks):
        await hook(uow, request, response, user)


async def run_verified_email_hooks(uow: UnitOfWork, user: UserInfo) -> None:
    """Let other modules act on ``user``'s verified address; nothing when it is not verified."""
    if user.email_verified_at is None:
        return
    for hook in list(verified_email_hooks):
        await hook(uow, user)


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
        _USERS.c.email_verified_at,
    )
    .join(_USERS, _USERS.c.id == _TOKENS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("token_hash"))
)


async def check_token(uow: UnitOfWork, token: str) -> TokenCheck:
    """Why a token is or is not good; reads only, so a rejected token writes nothing."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return TokenCheck(TokenStatus.INVALID)
    row = (await uow.execute(_TOKEN_CHECK, {"token_hash": hash_token(token)})).first()
    return _checked(row)


def _checked(row: Any) -> TokenCheck:
    """The answer to a row of ``_TOKEN_CHECK`` (None: no such token)."""
    if row is None:
        return TokenCheck(TokenStatus.INVALID)
    if row.revoked_at is not None:
        return TokenCheck(TokenStatus.REVOKED)
    if row.expires_at <= utcnow():
        return TokenCheck(TokenStatus.EXPIRED)
    user = UserInfo(row.id, row.email, row.name, row.role, row.created_at, row.email_verified_at)
    return TokenCheck(TokenStatus.VALID, user)


async def authenticate_token(uow: UnitOfWork, token: str) -> UserInfo | None:
    return (await check_token(uow, token)).user


async def revoke_token(uow: UnitOfWork, token: str) -> bool:
    """Revoke one token; False when it was unknown or already revoked."""
    forget_sign_ins(uow, token_hash=hash_token(token))
    revoked = await uow.changed(
        update(Token)
        .where(Token.token_hash == hash_token(token), Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    return bool(revoked)


async def revoke_user_tokens(uow: UnitOfWork, user_id: str) -> int:
    """Sign a user out everywhere; returns how many live tokens were revoked."""
    forget_sign_ins(uow, user_id=user_id)
    return await uow.changed(
        update(Token)
        .where(Token.user_id == user_id, Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


async def purge_tokens(uow: UnitOfWork, older_than: timedelta) -> int:
    """Delete tokens (sessions and mailed links) that expired more than ``older_than`` ago
    (they can never be used)."""
    sessions = await uow.changed(delete(Token).where(Token.expires_at < utcnow() - older_than))
    return sessions + await account_tokens.purge(uow, older_than)


# --- the sign-in check, remembered for a moment ------------------------------------------------
#
# Every signed-in request checks its token. Endpoints that hold no request transaction (the
# waiting room of a flash sale, the checkouts: ``deps.workflow_user``) pay a transaction of their
# own for it, a connection of the pool for three round trips; in a crowd of buyers polling, those
# checks were most of what the requests waited for. A process therefore remembers a good token
# for ``auth_cache_seconds`` (never past its expiry). What changes a sign-in forgets it in this
# process at once: a logout or any revocation, a password change or reset, a role change, an
# address verified. Another process learns of it when its entry runs out: a revoked token or a
# removed role may be honoured there for at most ``auth_cache_seconds`` (0 turns the cache off).


@dataclass(eq=False)
class SignInCache:
    """Good tokens of this process, by digest, for ``seconds`` at most (see above).

    An invalidation bumps ``epoch``: a check that read the database before it does not store
    its answer, so a reader racing a revocation never brings the revoked token back."""

    seconds: float
    clock: Callable[[], float] = time.monotonic
    max_entries: int = 50_000
    epoch: int = 0
    _entries: dict[str, tuple[float, UserInfo]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _SIGN_IN_CACHES.add(self)

    async def check(self, db: Database, token: str) -> TokenCheck:
        """:func:`check_token`, from memory when this process checked the token lately, else
        in a short transaction of its own."""
        if self.seconds <= 0 or not token or len(token) > TOKEN_MAX_LENGTH:
            async with db.transaction() as uow:
                return await check_token(uow, token)
        digest = hash_token(token)
        found = self._entries.get(digest)
        if found is not None:
            if self.clock() < found[0]:
                return TokenCheck(TokenStatus.VALID, found[1])
            del self._entries[digest]
        epoch = self.epoch
        row = await db.read_first(_TOKEN_CHECK, {"token_hash": digest})
        check = _checked(row)
        if check.user is not None and row is not None and epoch == self.epoch:
            left = (row.expires_at - utcnow()).total_seconds()
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # a flood of distinct tokens: start again
            self._entries[digest] = (self.clock() + min(self.seconds, left), check.user)
        return check

    def forget(self, *, user_id: str | None = None, token_hash: str | None = None) -> None:
        """Forget a token (by digest), every token of a user, or (neither given) everything."""
        self.epoch += 1
        if user_id is None and token_hash is None:
            self._entries.clear()
            return
        for digest, (_, user) in list(self._entries.items()):
            if digest == token_hash or user.id == user_id:
                del self._entries[digest]


_SIGN_IN_CACHES: weakref.WeakSet[SignInCache] = weakref.WeakSet()


def forget_sign_ins(
    uow: UnitOfWork, *, user_id: str | None = None, token_hash: str | None = None
) -> None:
    """Make this process's sign-in caches forget a token or a user's tokens now and again once
    ``uow`` commits (a check that read the row before the commit must not be kept either)."""

    def forget() -> None:
        for cache in list(_SIGN_IN_CACHES):
            cache.forget(user_id=user_id, token_hash=token_hash)

    forget()
    uow.after_commit(forget)


def sign_in_cache_for(runtime: Runtime) -> SignInCache:
    """The process's sign-in cache (built once per runtime from ``auth_cache_seconds``)."""
    cache = runtime.extras.get("identity.sign_ins")
    if cache is None:
        cache = SignInCache(runtime.settings.auth_cache_seconds)
        runtime.extras["identity.sign_ins"] = cache
    assert isinstance(cache, SignInCache)
    return cache
