"""orders, fulfilment, returns: their multi-step flows become workflow runs; honest order data

* **Order history**: orders were born ``paid`` with a made-up ``pending`` entry before it. That
  entry goes, the ``pending → paid`` entry becomes the birth (from nothing to ``paid``), and each
  order's later entries and its ``version`` move down by one. ``pending`` and
  ``payment_failed`` leave the status checks (no order could reach them).
* **Cancellations**: ``stock_returned_at`` / ``payment_released_at`` go; what a cancellation
  did is on its run (workflow ``orders.cancellation``, key = the order id). Every cancelled
  order gets one: ``completed`` when both were done, else ``waiting`` at the step left to do
  (recovery finishes it), so no order is restocked or refunded twice.
* **Pending shipments** (capture not confirmed) become ``waiting`` runs of
  ``fulfilment.ship_and_capture`` at the capture step; **received returns** not refunded yet
  become ``waiting`` runs of ``returns.return_and_refund`` at the refund step.

Downgrading puts the columns and status checks back (timestamps of finished cancellations are
read back from their runs); the history entries are not made up again.

Revision ID: 0015_orders_workflows
Revises: 0014_checkout_workflow
Create Date: 2026-12-04
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

import mercato.db

revision = "0015_orders_workflows"
down_revision = "0014_checkout_workflow"
branch_labels = None
depends_on = None

OLD_STATUSES = (
    "'pending', 'paid', 'payment_failed', 'cancelled', 'fulfilling', 'shipped', 'delivered', "
    "'return_requested', 'returned', 'refunded'"
)
STATUSES = (
    "'paid', 'cancelled', 'fulfilling', 'shipped', 'delivered', 'return_requested', 'returned', "
    "'refunded'"
)
SYSTEM = "system:migration"

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


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def _run(
    workflow: str,
    key: str,
    status: str,
    step: str,
    state: dict[str, Any],
    now: datetime,
    *,
    result: dict[str, Any] | None = None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    return {
        "id": f"wfr_{key}"[:40],
        "workflow": workflow,
        "key": key,
        "status": status,
        "step": step,
        "state": state,
        "fingerprint": fingerprint,
        "error": None,
        "result": result,
        "attempts": 1,
        "version": 1,
        "lease_until": now,
        "created_at": now,
        "updated_at": now,
    }


def _honest_history() -> None:
    """The made-up ``pending`` entry goes; the rest of each such order's history moves down."""
    op.execute(
        "UPDATE orders_history SET from_status = NULL "
        "WHERE seq = 2 AND from_status = 'pending' AND to_status = 'paid'"
    )
    op.execute(
        "DELETE FROM orders_history WHERE seq = 1 AND from_status IS NULL "
        "AND to_status = 'pending' AND order_id IN (SELECT order_id FROM orders_history "
        "WHERE seq = 2 AND from_status IS NULL AND to_status = 'paid')"
    )
    # The orders that lost their first entry are those without a seq 1 now.
    op.execute(
        "UPDATE orders_orders SET version = version - 1, previous_status = CASE "
        "WHEN previous_status = 'pending' THEN NULL ELSE previous_status END "
        "WHERE id NOT IN (SELECT order_id FROM orders_history WHERE seq = 1)"
    )
    # Through negative numbers: (order_id, seq) stays unique at every row of the update.
    op.execute(
        "UPDATE orders_history SET seq = -seq "
        "WHERE order_id NOT IN (SELECT order_id FROM orders_history WHERE seq = 1)"
    )
    op.execute("UPDATE orders_history SET seq = -seq - 1 WHERE seq < 0")


def _cancellation_runs(now: datetime) -> list[dict[str, Any]]:
    found = op.get_bind().execute(
        sa.text(
            "SELECT id, payment_intent_id, refunded_total, stock_returned_at, payment_released_at "
            "FROM orders_orders WHERE status = 'cancelled'"
        )
    )
    made = []
    for row in found:
        state = {
            "order_id": row.id,
            "actor": SYSTEM,
            "reason": None,
            "user_id": None,
            "adopted": True,
            "payment_intent_id": row.payment_intent_id,
            "units_restocked": 0,
            "stock_returned_at": _iso(row.stock_returned_at),
            "refunded": 0,
            "payment_released_at": _iso(row.payment_released_at),
        }
        result = None
        if row.stock_returned_at is None:
            status, step = "waiting", "cancel"
        elif row.payment_released_at is None:
            status, step = "waiting", "give_money_back"
        else:
            status, step = "completed", ""
            result = {"order_id": row.id, "refunded": 0}
        made.append(_run("orders.cancellation", row.id, status, step, state, now, result=result))
    return made


def _shipment_runs(now: datetime) -> list[dict[str, Any]]:
    """A shipment whose capture was never confirmed waits at the capture step (same key)."""
    found = op.get_bind().execute(
        sa.text(
            "SELECT s.id, s.order_id, s.fulfilment_id, s.carrier, s.service, s.tracking_number, "
            "s.tracking_url, s.label, s.capture_amount, s.created_by, o.payment_intent_id "
            "FROM fulfilment_shipments s JOIN orders_orders o ON o.id = s.order_id "
            "WHERE s.status = 'pending'"
        )
    )
    made = []
    for row in found:
        state = {
            "shipment_id": row.id,
            "order_id": row.order_id,
            "actor": row.created_by,
            "carrier": row.carrier,
            "service": row.service,
            "fulfilment_id": row.fulfilment_id,
            "wanted": None,
            "tracking_number": row.tracking_number,
            "tracking_url": row.tracking_url,
            "label": row.label,
            "capture_amount": int(row.capture_amount),
            "payment_intent_id": row.payment_intent_id,
        }
        made.append(
            _run(
                "fulfilment.ship_and_capture",
                row.id,
                "waiting",
                "capture",
                state,
                now,
                fingerprint=row.order_id,
            )
        )
    return made


def _refund_runs(now: datetime) -> list[dict[str, Any]]:
    """Goods received and not refunded yet wait at the refund step (same key)."""
    found = op.get_bind().execute(
        sa.text(
            "SELECT id, order_id, refund_amount, currency FROM returns_requests "
            "WHERE status = 'received'"
        )
    )
    made = []
    for row in found:
        state = {
            "return_id": row.id,
            "order_id": row.order_id,
            "actor": SYSTEM,
            "receipt": [],
            "refund_shipping_on_full_return": True,
            "refund_amount": int(row.refund_amount),
            "currency": row.currency,
            "refunded_already": False,
        }
        made.append(_run("returns.return_and_refund", row.id, "waiting", "refund", state, now))
    return made


def _sqlite_foreign_keys_off() -> bool:
    """SQLite changes a table by rebuilding it, and dropping the old ``orders_orders`` would
    delete (or refuse, for) the lines and history rows that point at it. SQLite's own recipe:
    foreign keys off, which only takes effect between transactions, then checked at the end.
    What earlier migrations of this run did is committed first, with their revision stamped.
    (The migration's connection is closed afterwards, so nothing else runs without them.)"""
    if op.get_bind().dialect.name != "sqlite":
        return False
    op.execute("COMMIT")
    op.execute("PRAGMA foreign_keys=OFF")
    op.execute("BEGIN IMMEDIATE")
    return True


def _check_foreign_keys() -> None:
    broken = op.get_bind().execute(sa.text("PRAGMA foreign_key_check")).all()
    if broken:
        raise RuntimeError(f"rows left pointing nowhere: {broken[:10]}")


def upgrade() -> None:
    rebuilt = _sqlite_foreign_keys_off()
    bind = op.get_bind()
    unreachable = bind.execute(
        sa.text("SELECT count(*) FROM orders_orders WHERE status IN ('pending', 'payment_failed')")
    ).scalar()
    if unreachable:
        raise RuntimeError(
            f"{unreachable} order(s) are pending or payment_failed, which no code path makes; "
            "look at them before upgrading"
        )
    _honest_history()
    now = datetime.now(UTC)
    made = _cancellation_runs(now) + _shipment_runs(now) + _refund_runs(now)
    if made:
        op.bulk_insert(runs, made)

    with op.batch_alter_table("orders_orders") as batch:
        batch.drop_column("stock_returned_at")
        batch.drop_column("payment_released_at")
        batch.drop_constraint(op.f("ck_orders_orders_status"), type_="check")
        batch.create_check_constraint(op.f("ck_orders_orders_status"), f"status IN ({STATUSES})")
    with op.batch_alter_table("orders_history") as batch:
        batch.drop_constraint(op.f("ck_orders_history_to_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_orders_history_to_status"), f"to_status IN ({STATUSES})"
        )
    if rebuilt:
        _check_foreign_keys()


def downgrade() -> None:
    rebuilt = _sqlite_foreign_keys_off()
    with op.batch_alter_table("orders_history") as batch:
        batch.drop_constraint(op.f("ck_orders_history_to_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_orders_history_to_status"), f"to_status IN ({OLD_STATUSES})"
        )
    with op.batch_alter_table("orders_orders") as batch:
        batch.add_column(sa.Column("stock_returned_at", mercato.db.UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("payment_released_at", mercato.db.UTCDateTime(), nullable=True))
        batch.drop_constraint(op.f("ck_orders_orders_status"), type_="check")
        batch.create_check_constraint(
            op.f("ck_orders_orders_status"), f"status IN ({OLD_STATUSES})"
        )
    bind = op.get_bind()
    orders = sa.table(
        "orders_orders",
        sa.column("id", sa.String),
        sa.column("stock_returned_at", mercato.db.UTCDateTime()),
        sa.column("payment_released_at", mercato.db.UTCDateTime()),
    )
    found = bind.execute(
        sa.select(runs.c.key, runs.c.state).where(runs.c.workflow == "orders.cancellation")
    )
    for key, state in found:
        values = {
            name: datetime.fromisoformat(state[name])
            for name in ("stock_returned_at", "payment_released_at")
            if state.get(name)
        }
        if values:
            bind.execute(sa.update(orders).where(orders.c.id == key).values(**values))
    if rebuilt:
        _check_foreign_keys()
