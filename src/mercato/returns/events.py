"""What the returns module declares to the worker: its return-and-refund workflow. A refund the
payment processor did not confirm waits on its run; the core job ``workflows.recover`` retries
it with the same key, so it is made once."""

from __future__ import annotations

from mercato.returns import service

WORKFLOWS = (service.RETURN_AND_REFUND,)
