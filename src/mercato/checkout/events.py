"""What the checkout module gives the worker: its workflows, which the core
``workflows.recover`` job finishes or undoes after a crash (see
:mod:`mercato.checkout.workflow` and :mod:`mercato.checkout.flash`), and the job that places
queued flash-sale purchases in batches, woken as soon as one is queued."""

from __future__ import annotations

from mercato.checkout.flash import CHANNEL, PURCHASE, drain_purchases
from mercato.checkout.workflow import CHECKOUT
from mercato.worker import Job

WORKFLOWS = (CHECKOUT, PURCHASE)

DRAIN_INTERVAL = 5.0
"""A safety net only: an enqueue wakes the job at once (``NOTIFY`` or in process)."""
JOBS = (
    Job(
        "flashsale.checkout",
        DRAIN_INTERVAL,
        drain_purchases,
        channel=CHANNEL,
        claimed=False,  # every worker drains: a batch claims its purchases (SKIP LOCKED)
        own_loop=True,  # buyers wait on it: never behind an outbox pass
    ),
)
