"""The order state machine, as data, and the rules read off it.

:data:`TRANSITIONS` is the machine, and nothing else decides which moves are legal::

    from               may go to
    ----------------   -----------------------------------------------
    (placed)           paid
    paid               fulfilling, shipped, cancelled
    fulfilling         shipped, cancelled
    shipped            delivered
    delivered          return_requested
    return_requested   returned, delivered (the return was rejected)
    returned           refunded, return_requested (another partial return)
    refunded           return_requested (a later partial return)
    cancelled          -  (final)

An order is only placed once its payment is authorized (the checkout workflow), so it is born
``paid``: its first history entry says so, from nothing. There is no ``pending`` and no
``payment_failed`` order: a checkout whose payment fails places none.

Partial flows stay coarse on purpose: the order's status says where the order as a whole is,
while the per-line counters (``quantity_shipped``, ``quantity_returned``) and ``refunded_total``
say how much. Every state is reachable from ``paid``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mercato.orders.models import ORDER_STATUSES
from mercato.problems import Problem, validation_problem

if TYPE_CHECKING:
    from mercato.orders.queries import OrderInfo

BORN = "paid"
"""The status every order is placed in (its payment is authorized by then)."""

TRANSITIONS: dict[str, frozenset[str]] = {
    "paid": frozenset({"fulfilling", "shipped", "cancelled"}),
    "cancelled": frozenset(),
    "fulfilling": frozenset({"shipped", "cancelled"}),
    "shipped": frozenset({"delivered"}),
    "delivered": frozenset({"return_requested"}),
    "return_requested": frozenset({"returned", "delivered"}),
    "returned": frozenset({"refunded", "return_requested"}),
    "refunded": frozenset({"return_requested"}),
}
STATUSES: tuple[str, ...] = ORDER_STATUSES
assert set(TRANSITIONS) == set(STATUSES), "every status has a row in the table"
assert all(to <= set(STATUSES) for to in TRANSITIONS.values())

CANCELLABLE: frozenset[str] = frozenset(s for s, to in TRANSITIONS.items() if "cancelled" in to)
SHIPPABLE: frozenset[str] = frozenset({"paid", "fulfilling", "shipped"})
RETURNABLE: frozenset[str] = frozenset(
    {"shipped", "delivered", "return_requested", "returned", "refunded"}
)
FINAL: frozenset[str] = frozenset(s for s, to in TRANSITIONS.items() if not to)
NOT_SOLD: frozenset[str] = frozenset({"cancelled"})
"""Orders that bring no revenue: cancelled (their money went back)."""


def _reachable() -> set[str]:
    seen, todo = {BORN}, [BORN]
    while todo:
        for to in TRANSITIONS[todo.pop()]:
            if to not in seen:
                seen.add(to)
                todo.append(to)
    return seen


assert _reachable() == set(STATUSES), "every state is reachable from the one orders are born in"


def allowed_from(to_status: str) -> frozenset[str]:
    """The statuses from which ``to_status`` may be reached."""
    return frozenset(s for s, to in TRANSITIONS.items() if to_status in to)


def can_transition(from_status: str, to_status: str) -> bool:
    return to_status in TRANSITIONS.get(from_status, frozenset())


def check_status(status: str, field: str = "status") -> str:
    if status not in TRANSITIONS:
        raise validation_problem(field, f"must be one of {', '.join(STATUSES)}")
    return status


def invalid_transition(from_status: str, to_status: str, detail: str | None = None) -> Problem:
    extra: dict[str, Any] = {
        "from": from_status,
        "to": to_status,
        "allowed": sorted(TRANSITIONS.get(from_status, frozenset())),
    }
    return Problem(
        409,
        "invalid_transition",
        detail or f"An order cannot go from {from_status} to {to_status}",
        title="Invalid transition",
        **extra,
    )


def can_cancel(status: str, units_shipped: int) -> bool:
    """A cancellation needs a cancellable status and nothing shipped yet."""
    return status in CANCELLABLE and units_shipped == 0


# -- what a page may offer -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderActions:
    """What may be done to an order now (the back office shows exactly these forms)."""

    allocate: bool
    ship_units: int
    """Units that may still ship (0: no shipping form)."""
    cancel: bool
    release_payment: bool
    """A cancelled order whose money is not given back yet: finish it now."""
    refund_returns: int
    """Received returns whose refund has not gone through."""
    manual_statuses: tuple[str, ...]

    @property
    def ship(self) -> bool:
        return self.ship_units > 0


def allowed_actions(order: OrderInfo, *, allocated: bool, refunds_waiting: int = 0) -> OrderActions:
    """The actions the order's state allows. ``allocated``: whether the order has fulfilments
    (fulfilment's business); ``refunds_waiting``: its received returns not yet refunded."""
    shippable = order.status in SHIPPABLE
    unshipped = sum(line.quantity - line.quantity_shipped for line in order.lines)
    return OrderActions(
        allocate=shippable and not allocated,
        ship_units=unshipped if shippable else 0,
        cancel=order.can_cancel,
        release_payment=order.status == "cancelled" and order.payment_released_at is None,
        refund_returns=refunds_waiting,
        manual_statuses=tuple(order.next_statuses),
    )
