"""The staff view of payments. Money moves only through other modules' services (checkout,
fulfilment, returns), so nothing here authorizes, captures or refunds."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mercato.identity.deps import StaffUser
from mercato.openapi import problems
from mercato.payments import service
from mercato.payments.schemas import IntentOut, SandboxChargeOut, SandboxLedgerOut
from mercato.problems import Problem, not_found
from mercato.runtime import RuntimeDep, UowDep

router = APIRouter(prefix="/api/admin/payments", tags=["payments"])


@router.get("/sandbox/charges", response_model=SandboxLedgerOut, responses=problems(404))
async def sandbox_ledger(
    _staff: StaffUser,
    runtime: RuntimeDep,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> SandboxLedgerOut:
    """What the sandbox processor recorded, newest first."""
    if not isinstance(service.get_provider(runtime), service.SandboxProvider):
        raise Problem(404, "not_found", "The sandbox payment provider is not in use")
    charges = await service.list_charges(uow, limit=limit)
    return SandboxLedgerOut(charges=[SandboxChargeOut.of(c) for c in charges])


@router.get("/{intent_id}", response_model=IntentOut)
async def get_payment(intent_id: str, _staff: StaffUser, uow: UowDep) -> IntentOut:
    """A payment intent with every operation made on it."""
    intent = await service.get_intent(uow, intent_id)
    if intent is None:
        raise not_found("Payment intent", intent_id)
    return IntentOut.of(intent, await service.intent_events(uow, intent_id))
