"""accounts: mailed links (password reset, e-mail verification), verified addresses, and one
spelling per e-mail address

* ``identity_account_tokens``: the single-use links, stored as SHA-256 digests only.
* ``identity_users.email_verified_at``.
* ``notifications_emails.account_token_id``: a mail whose link is completed when it is sent
  (the token is derived then, never stored with the mail).
* **Addresses normalised** as the service now does (Unicode NFKC, case-folded, trimmed). Rows
  stored under the earlier rule (trimmed, lower-cased) are rewritten. When two accounts have
  one normalised address (the same address in full-width letters and in plain ones), the
  account that already has the normal spelling keeps it, else the oldest; the others are left
  as they are and reported in the migration's log. Logins look addresses up normalised, so
  such a left-over account can no longer be logged into: an operator decides what becomes of
  it (docs/operations.md).

Downgrading drops the table and the columns; addresses stay normalised.

Revision ID: 0016_accounts
Revises: 0015_orders_workflows
Create Date: 2026-12-10
"""

from __future__ import annotations

import logging
import unicodedata
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0016_accounts"
down_revision = "0015_orders_workflows"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

users = sa.table(
    "identity_users",
    sa.column("id", sa.String),
    sa.column("email", sa.String),
    sa.column("created_at", mercato.db.UTCDateTime()),
)


def normalize_email(email: str) -> str:
    # The service's rule, copied: a migration must not change when the code does.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).casefold()).strip()


def normalize_addresses(conn: sa.Connection) -> list[tuple[str, str, str]]:
    """Rewrite every address to its normal spelling; returns the accounts left as they were
    because another account has that spelling: (user id, address, the account keeping it)."""
    rows = conn.execute(sa.select(users.c.id, users.c.email, users.c.created_at)).all()
    groups: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        groups[normalize_email(row.email)].append(row)
    left: list[tuple[str, str, str]] = []
    for normal, group in groups.items():
        # Who keeps the address: the account already spelled so, else the oldest.
        group.sort(key=lambda r: (r.email != normal, r.created_at, r.id))
        keeper, *others = group
        if keeper.email != normal:
            conn.execute(users.update().where(users.c.id == keeper.id).values(email=normal))
        left.extend((other.id, other.email, keeper.id) for other in others)
    for user_id, email, keeper_id in left:
        log.warning(
            "identity_users %s (%r) has the same normalised e-mail address as %s: "
            "left unchanged, it can no longer log in; see docs/operations.md",
            user_id,
            email,
            keeper_id,
        )
    return left


def upgrade() -> None:
    op.create_table(
        "identity_account_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("purpose", sa.String(20), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("expires_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("used_at", mercato.db.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_identity_account_tokens")),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["identity_users.id"],
            name=op.f("fk_identity_account_tokens_user_id_identity_users"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("token_hash", name=op.f("uq_identity_account_tokens_token_hash")),
        sa.CheckConstraint(
            "purpose IN ('reset_password', 'verify_email')",
            name=op.f("ck_identity_account_tokens_purpose"),
        ),
    )
    op.create_index(
        op.f("ix_identity_account_tokens_user_id"), "identity_account_tokens", ["user_id"]
    )
    op.create_index(
        op.f("ix_identity_account_tokens_expires_at"), "identity_account_tokens", ["expires_at"]
    )
    with op.batch_alter_table("identity_users") as batch:
        batch.add_column(sa.Column("email_verified_at", mercato.db.UTCDateTime(), nullable=True))
    with op.batch_alter_table("notifications_emails") as batch:
        batch.add_column(sa.Column("account_token_id", sa.String(40), nullable=True))
    normalize_addresses(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("notifications_emails") as batch:
        batch.drop_column("account_token_id")
    with op.batch_alter_table("identity_users") as batch:
        batch.drop_column("email_verified_at")
    op.drop_table("identity_account_tokens")
