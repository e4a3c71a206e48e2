"""The returns module's public face: what other modules and the adapters call.

Requests and staff decisions live in :mod:`.requests` (each takes the caller's unit of work);
receiving the goods and refunding them is the return-and-refund workflow
(:mod:`.return_and_refund`), whose starters take the runtime (the workflow runs its steps in
transactions of its own and calls the payment processor between them). Whose goods a return
sends back, how its refund splits by order part and what a seller reads of its returns live in
:mod:`.sellers`; a seller's performance counted from its order parts, shipments, returns and
reviews (the reader the marketplace's buy box is fed by) in :mod:`.performance`.
"""

from __future__ import annotations

from mercato.returns.models import DISPOSITIONS, RETURN_STATUSES
from mercato.returns.performance import DEFECT_STARS, dispatch_deadline, seller_performance
from mercato.returns.requests import (
    COUNTED,
    LINES,
    MAX_PAGE,
    MAX_REASON,
    OPEN,
    REQUESTS,
    RETURN_REJECTED,
    RETURN_REQUESTED,
    Decision,
    ReturnableLine,
    ReturnInfo,
    ReturnLineInfo,
    approve_return,
    count_by_status,
    customer_returns,
    decide_return,
    get_return,
    list_returns,
    reject_return,
    request_return,
    returnable_lines,
    returns_for_order,
    units_spoken_for,
)
from mercato.returns.return_and_refund import (
    REFUND_ISSUED,
    REFUND_PENDING,
    RETURN_AND_REFUND,
    RETURN_RECEIVED,
    Disposition,
    LineReceipt,
    ReturnRefundState,
    receive_return,
    refund_key,
    refund_return,
    refund_waiting,
)
from mercato.returns.sellers import (
    PartRefund,
    SellerReturn,
    SellerReturnLine,
    refund_by_part,
    seller_return,
    seller_returns,
    split_refund,
)

__all__ = [
    "COUNTED",
    "DEFECT_STARS",
    "DISPOSITIONS",
    "LINES",
    "MAX_PAGE",
    "MAX_REASON",
    "OPEN",
    "REFUND_ISSUED",
    "REFUND_PENDING",
    "REQUESTS",
    "RETURN_AND_REFUND",
    "RETURN_RECEIVED",
    "RETURN_REJECTED",
    "RETURN_REQUESTED",
    "RETURN_STATUSES",
    "Decision",
    "Disposition",
    "LineReceipt",
    "PartRefund",
    "ReturnInfo",
    "ReturnLineInfo",
    "ReturnRefundState",
    "ReturnableLine",
    "SellerReturn",
    "SellerReturnLine",
    "approve_return",
    "count_by_status",
    "customer_returns",
    "decide_return",
    "dispatch_deadline",
    "get_return",
    "list_returns",
    "receive_return",
    "refund_by_part",
    "refund_key",
    "refund_return",
    "refund_waiting",
    "reject_return",
    "request_return",
    "returnable_lines",
    "returns_for_order",
    "seller_performance",
    "seller_return",
    "seller_returns",
    "split_refund",
    "units_spoken_for",
]
