"""Tokens mailed to prove an address: to set a forgotten password, or to verify the e-mail.

* **Never stored in clear.** A token is ``HMAC-SHA256(secret key, row id)``: the row keeps only
  its SHA-256, the outbox event that asks for the mail carries only the row id, and the mail is
  recorded with a placeholder where the link goes. The sender derives the token again when it
  sends the mail (see ``notifications``). Someone with a copy of the database (or of the mail
  log) holds no working link; someone who also has the secret key could derive one, but with
  the key they could already forge every signed cookie of the shop.
* **Single-use**: redeeming is one conditional ``UPDATE … RETURNING`` on the unused, unexpired
  row, so of two concurrent uses exactly one wins.
* **Expiring**, and **one live token per purpose**: asking again retires the earlier ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, delete, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.identity.models import AccountToken
from mercato.ids import new_id

RESET_PASSWORD = "reset_password"  # noqa: S105  (a purpose, not a secret)
VERIFY_EMAIL = "verify_email"
TOKEN_MAX_LENGTH = 128  # a real token is 43 characters

_SALT = b"mercato.identity.account-token:"
_TOKENS = cast(Table, AccountToken.__table__)


@dataclass(frozen=True, slots=True)
class AccountTokenInfo:
    id: str
    user_id: str
    purpose: str
    email: str
    expires_at: datetime


def token_value(secret_key: str, token_id: str) -> str:
    """The token of row ``token_id``: what the mailed link carries."""
    mac = hmac.new(secret_key.encode(), _SALT + token_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _info(row: AccountToken) -> AccountTokenInfo:
    return AccountTokenInfo(row.id, row.user_id, row.purpose, row.email, row.expires_at)


async def retire(uow: UnitOfWork, user_id: str, purpose: str) -> int:
    """Make every unused token of ``purpose`` of the user unusable."""
    return await uow.changed(
        update(AccountToken)
        .where(
            AccountToken.user_id == user_id,
            AccountToken.purpose == purpose,
            AccountToken.used_at.is_(None),
        )
        .values(used_at=utcnow())
    )


async def issue(
    uow: UnitOfWork,
    *,
    secret_key: str,
    user_id: str,
    email: str,
    purpose: str,
    ttl_seconds: int,
) -> AccountTokenInfo:
    """A new token for ``purpose`` (the user's earlier ones of that purpose stop working)."""
    await retire(uow, user_id, purpose)
    now = utcnow()
    token_id = new_id("atk")
    row = AccountToken(
        id=token_id,
        user_id=user_id,
        purpose=purpose,
        email=email,
        token_hash=_digest(token_value(secret_key, token_id)),
        created_at=now,
        expires_at=now + timedelta(seconds=ttl_seconds),
        used_at=None,
    )
    uow.add(row)
    await uow.flush()
    return _info(row)


async def redeem(uow: UnitOfWork, token: str, purpose: str) -> AccountTokenInfo | None:
    """Use ``token`` up; None when it is unknown, of another purpose, used or expired."""
    if not token or len(token) > TOKEN_MAX_LENGTH:
        return None
    now = utcnow()
    c = _TOKENS.c
    row = (
        await uow.execute(
            update(_TOKENS)
            .where(
                c.token_hash == _digest(token),
                c.purpose == purpose,
                c.used_at.is_(None),
                c.expires_at > now,
            )
            .values(used_at=now)
            .returning(c.id, c.user_id, c.purpose, c.email, c.expires_at)
        )
    ).first()
    if row is None:
        return None
    return AccountTokenInfo(row.id, row.user_id, row.purpose, row.email, row.expires_at)


async def usable(uow: UnitOfWork, token_id: str) -> AccountTokenInfo | None:
    """The token row ``token_id`` while it can still be used (to mail it, or not)."""
    row = await uow.scalar(
        select(AccountToken).where(
            AccountToken.id == token_id,
            AccountToken.used_at.is_(None),
            AccountToken.expires_at > utcnow(),
        )
    )
    return None if row is None else _info(row)


async def purge(uow: UnitOfWork, older_than: timedelta) -> int:
    """Forget tokens that expired more than ``older_than`` ago."""
    return await uow.changed(
        delete(AccountToken).where(AccountToken.expires_at < utcnow() - older_than)
    )
