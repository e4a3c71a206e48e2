"""Identity tables.

Tokens are stored only as SHA-256 digests: a leaked database (or backup) then holds nothing a
client could present, while lookup stays a single indexed equality match. Revocation is a
timestamp rather than a delete so that a revoked token can be told apart from a forged one.
The tokens mailed to prove an address (password reset, e-mail verification) are kept the same
way, in a table of their own: they are single-use and short-lived, and sign no one in.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from mercato.db import Base, UTCDateTime

ROLES: tuple[str, ...] = ("customer", "staff", "seller")


class User(Base):
    __tablename__ = "identity_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    # Always stored normalised (NFKC, case-folded, trimmed: ``service.normalize_email``), so
    # the unique constraint holds for every spelling of one address.
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # When the owner followed a verification link mailed to ``email`` (None: not proven yet).
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (CheckConstraint("role IN ('customer', 'staff', 'seller')", name="role"),)


class Token(Base):
    __tablename__ = "identity_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Indexed for the purge job, which deletes long-expired rows.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    user_agent: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(45))


ACCOUNT_TOKEN_PURPOSES: tuple[str, ...] = ("reset_password", "verify_email")


class AccountToken(Base):
    """A single-use token mailed to ``email``: to set a new password, or to verify the address.

    Only its SHA-256 is stored. The token itself is derived from the row's id with the shop's
    secret key (see ``account_tokens.token_value``), so that the mail can be completed when it
    is sent without the token ever being written down in clear (not here, not in the outbox,
    not in the mail log).
    """

    __tablename__ = "identity_account_tokens"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(20))
    # The address the token was mailed to: it proves that address, not whatever the account's
    # address is later.
    email: Mapped[str] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    # Set when redeemed, or when a newer token of the same purpose replaced it.
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        CheckConstraint("purpose IN ('reset_password', 'verify_email')", name="purpose"),
    )


class Address(Base):
    """A customer's saved delivery address. At most one per customer is the default, which the
    database itself holds to (a unique index over the default rows)."""

    __tablename__ = "identity_addresses"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("identity_users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    line1: Mapped[str] = mapped_column(String(200))
    line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(20))
    region: Mapped[str | None] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(String(2))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(
            "uq_identity_addresses_one_default",
            "user_id",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )
