"""What the returns API takes and answers with (amounts as decimal strings)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from mercato.money import format_minor
from mercato.returns.service import ReturnInfo
from mercato.text import PlainLine, PlainText

LineId = Annotated[str, PlainLine(min_length=1, max_length=40)]


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_line_id: LineId
    quantity: int = Field(ge=1, le=100_000)


class ReturnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)
    reason: Annotated[str, PlainText(min_length=1, max_length=500)]


class DecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, PlainText(max_length=500)] | None = None


class ReceiveLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    order_line_id: LineId
    disposition: Literal["restock", "write_off"]
    warehouse: Annotated[str, PlainLine(max_length=16)] | None = None


class ReceiveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lines: list[ReceiveLineIn] = Field(min_length=1, max_length=500)


class ReturnLineOut(BaseModel):
    order_line_id: str
    quantity: int
    disposition: str | None
    warehouse: str | None
    refund: str


class ReturnOut(BaseModel):
    id: str
    order_id: str
    status: str
    reason: str
    note: str | None
    currency: str
    refund_amount: str
    refund_shipping: bool
    refund_pending: bool
    created_at: datetime
    decided_at: datetime | None
    received_at: datetime | None
    refunded_at: datetime | None
    lines: list[ReturnLineOut]

    @classmethod
    def of(cls, r: ReturnInfo) -> ReturnOut:
        c = r.currency
        return cls(
            id=r.id,
            order_id=r.order_id,
            status=r.status,
            reason=r.reason,
            note=r.staff_note,
            currency=c,
            refund_amount=format_minor(r.refund_amount, c),
            refund_shipping=r.refund_shipping,
            refund_pending=r.refund_pending,
            created_at=r.created_at,
            decided_at=r.decided_at,
            received_at=r.received_at,
            refunded_at=r.refunded_at,
            lines=[
                ReturnLineOut(
                    order_line_id=line.order_line_id,
                    quantity=line.quantity,
                    disposition=line.disposition,
                    warehouse=line.warehouse_code,
                    refund=format_minor(line.amount, c),
                )
                for line in r.lines
            ],
        )


class StaffReturnOut(ReturnOut):
    user_id: str

    @classmethod
    def staff(cls, r: ReturnInfo) -> StaffReturnOut:
        return cls(**ReturnOut.of(r).model_dump(), user_id=r.user_id)


class ReturnListOut(BaseModel):
    items: list[ReturnOut]


class StaffReturnListOut(BaseModel):
    items: list[StaffReturnOut]
