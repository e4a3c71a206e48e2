"""checkout: checkouts become workflow runs; the saga table goes

Every ``checkout_sagas`` row is copied into ``workflow_runs`` (workflow ``checkout``, key
``<user id>:<Idempotency-Key>``), so that a finished checkout keeps its replay answer and one in
flight is finished or undone by recovery:

* ``completed`` → ``completed`` with its 201 body; a legacy row whose cart was not emptied yet
  (step other than ``done``) has its cart emptied here, as recovery did;
* ``failed`` → ``failed`` with its problem;
* ``priced``, ``authorized`` → ``running`` at the ``authorize`` step, lease passed: recovery
  looks the payment up by the checkout's id and places the order, or undoes the checkout;
* ``compensating`` → ``compensating`` from the ``authorize`` step (void, then release) with the
  problem it was being undone for;
* ``started``, ``reserved`` (the earlier separate steps, before any payment) → ``compensating``
  from ``authorize`` with ``checkout_interrupted``, as recovery did.

A checkout keeps its id (``chk_X``) as its run's id and as the owner of its stock, promo use and
payment. The redemptions' ``saga_id`` column becomes ``checkout_id``.

Downgrading recreates the empty saga table (the runs stay in ``workflow_runs``).

Revision ID: 0014_checkout_workflow
Revises: 0013_workflows
Create Date: 2026-12-03
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import RowMapping

import mercato.db

revision = "0014_checkout_workflow"
down_revision = "0013_workflows"
branch_labels = None
depends_on = None

SAGA_STATUSES = (
    "status IN ('started', 'reserved', 'priced', 'authorized', 'completed', 'compensating', "
    "'failed')"
)
INTERRUPTED = {
    "type": "https://mercato.dev/problems/checkout-interrupted",
    "title": "Checkout interrupted",
    "status": 409,
    "detail": "The checkout was interrupted before payment and has been cancelled; nothing "
    "was charged. Please check out again.",
    "code": "checkout_interrupted",
}

sagas = sa.table(
    "checkout_sagas",
    sa.column("id", sa.String),
    sa.column("user_id", sa.String),
    sa.column("idempotency_key", sa.String),
    sa.column("request_fingerprint", sa.String),
    sa.column("status", sa.String),
    sa.column("step", sa.String),
    sa.column("cart_id", sa.String),
    sa.column("currency", sa.String),
    sa.column("request", mercato.db.JSONType),
    sa.column("cart_snapshot", mercato.db.JSONType),
    sa.column("pricing", mercato.db.JSONType),
    sa.column("promo_id", sa.String),
    sa.column("order_id", sa.String),
    sa.column("payment_intent_id", sa.String),
    sa.column("error", mercato.db.JSONType),
    sa.column("response", mercato.db.JSONType),
    sa.column("attempts", sa.Integer),
    sa.column("created_at", mercato.db.UTCDateTime()),
    sa.column("updated_at", mercato.db.UTCDateTime()),
)
runs = sa.table(
    "workflow_runs",
    sa.column("id", sa.String),
    sa.column("workflow", sa.String),
    sa.column("key", sa.String),
    sa.column("status", sa.String),
    sa.column("step", sa.String),
    sa.column("state", mercato.db.JSONType),
    sa.column("fingerprint", sa.String),
    sa.column("error", mercato.db.JSONType),
    sa.column("result", mercato.db.JSONType),
    sa.column("attempts", sa.Integer),
    sa.column("version", sa.Integer),
    sa.column("lease_until", mercato.db.UTCDateTime()),
    sa.column("created_at", mercato.db.UTCDateTime()),
    sa.column("updated_at", mercato.db.UTCDateTime()),
)


def _where(row: RowMapping) -> tuple[str, str, dict[str, Any] | None]:
    """The run's status, next step and problem for a saga's status."""
    status, error = row["status"], row["error"]
    if status == "completed":
        return "completed", "", None
    if status == "failed":
        return "failed", "", error
    if status in ("priced", "authorized") and row["pricing"] is not None:
        return "running", "authorize", None
    if status == "compensating":
        return "compensating", "authorize", error or INTERRUPTED
    return "compensating", "authorize", INTERRUPTED


def _state(row: RowMapping) -> dict[str, Any]:
    request = dict(row["request"] or {})
    address = dict(request.get("shipping_address") or {})
    intent = row["payment_intent_id"]
    return {
        "checkout_id": row["id"],
        "user_id": row["user_id"],
        "email": str(request.get("email") or ""),
        "cart_id": row["cart_id"],
        "currency": row["currency"],
        "shipping_address": {str(k): str(v) for k, v in address.items() if v is not None},
        "shipping_method": str(request.get("shipping_method") or ""),
        "promo_id": row["promo_id"],
        "promo_code": request.get("promo_code"),
        "items": list(row["cart_snapshot"] or []),
        "pricing": dict(row["pricing"] or {}),
        "order_id": row["order_id"],
        "payment": {"intent_id": intent} if intent else None,
        "order_status": (row["response"] or {}).get("status"),
    }


def _run(row: RowMapping) -> dict[str, Any]:
    status, step, error = _where(row)
    updated: datetime = row["updated_at"]
    return {
        "id": row["id"],
        "workflow": "checkout",
        "key": f"{row['user_id']}:{row['idempotency_key']}",
        "status": status,
        "step": step,
        "state": _state(row),
        "fingerprint": row["request_fingerprint"],
        "error": error,
        "result": row["response"] if status == "completed" else None,
        "attempts": max(int(row["attempts"] or 0), 1),
        "version": 1,
        # In the past: recovery takes the runs in flight over at once.
        "lease_until": updated,
        "created_at": row["created_at"],
        "updated_at": updated,
    }


def _copy_sagas() -> None:
    conn = op.get_bind()
    batch: list[dict[str, Any]] = []
    uncleared: list[str] = []
    for row in conn.execute(sa.select(sagas).order_by(sagas.c.created_at)).mappings():
        batch.append(_run(row))
        if row["status"] == "completed" and row["step"] != "done":
            uncleared.append(row["cart_id"])
        if len(batch) == 500:
            conn.execute(runs.insert(), batch)
            batch = []
    if batch:
        conn.execute(runs.insert(), batch)
    for cart_id in uncleared:
        # The order was placed before the cart was emptied (rows of an earlier version).
        conn.execute(sa.text("DELETE FROM cart_lines WHERE cart_id = :c"), {"c": cart_id})
        conn.execute(
            sa.text("UPDATE cart_carts SET version = version + 1 WHERE id = :c"), {"c": cart_id}
        )


def _rename_owner_column(old: str, new: str) -> None:
    # Two batches: SQLite rebuilds the table for each, and a constraint on the renamed column
    # added in the same batch as the rename would be lost.
    table = "checkout_promo_redemptions"
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(f"uq_{table}_{old}", type_="unique")
        batch.alter_column(
            old, new_column_name=new, existing_type=sa.String(40), existing_nullable=False
        )
    with op.batch_alter_table(table) as batch:
        batch.create_unique_constraint(f"uq_{table}_{new}", [new])


def upgrade() -> None:
    _copy_sagas()
    op.drop_index("ix_checkout_sagas_status_updated_at", table_name="checkout_sagas")
    op.drop_table("checkout_sagas")
    _rename_owner_column("saga_id", "checkout_id")


def downgrade() -> None:
    _rename_owner_column("checkout_id", "saga_id")
    op.create_table(
        "checkout_sagas",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("request_fingerprint", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("cart_id", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("request", mercato.db.JSONType, nullable=False),
        sa.Column("cart_snapshot", mercato.db.JSONType, nullable=False),
        sa.Column("pricing", mercato.db.JSONType, nullable=True),
        sa.Column("promo_id", sa.String(40), nullable=True),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("payment_intent_id", sa.String(40), nullable=True),
        sa.Column("error", mercato.db.JSONType, nullable=True),
        sa.Column("response", mercato.db.JSONType, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", mercato.db.UTCDateTime(), nullable=True),
        sa.Column("created_at", mercato.db.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mercato.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_sagas")),
        sa.UniqueConstraint(
            "user_id", "idempotency_key", name=op.f("uq_checkout_sagas_user_id_idempotency_key")
        ),
        sa.UniqueConstraint("order_id", name=op.f("uq_checkout_sagas_order_id")),
        sa.CheckConstraint(SAGA_STATUSES, name=op.f("ck_checkout_sagas_status_known")),
    )
    op.create_index(
        "ix_checkout_sagas_status_updated_at", "checkout_sagas", ["status", "updated_at"]
    )
