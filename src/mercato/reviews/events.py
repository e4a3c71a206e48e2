"""The reviews module's background work, declared as data: none. Its changes are complete in
the transaction that makes them (the product's figures included); what follows from them is
other modules' business, through the ``ProductRatingChanged`` events it publishes (the search
index takes the new rating from them)."""

from __future__ import annotations

from mercato.events import Consumer
from mercato.worker import Job

CONSUMERS: tuple[Consumer, ...] = ()
JOBS: tuple[Job, ...] = ()
