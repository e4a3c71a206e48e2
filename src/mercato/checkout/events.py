"""What the checkout module gives the worker: its workflow, which the core ``workflows.recover``
job finishes or undoes after a crash (see :mod:`mercato.checkout.workflow`)."""

from __future__ import annotations

from mercato.checkout.workflow import CHECKOUT

WORKFLOWS = (CHECKOUT,)
