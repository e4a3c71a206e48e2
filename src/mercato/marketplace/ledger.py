"""The marketplace's double-entry ledger: sales, refunds, cancellations and payouts.

Accounts (per currency):

* ``customer_clearing``: what customers paid for sellers' goods (debited by a sale, credited by
  a cancellation that voids it);
* ``refunds``: what was paid back to customers (credited by a refund);
* ``commission_revenue``: what the shop keeps (credited by a sale, debited by a reversal);
* ``seller_payable:<seller id>``: what the shop owes the seller (credited by its share of a
  sale, debited by its share of a refund and by a payout);
* ``payouts_clearing``: what was paid out to sellers (credited by a payout).

Sign convention: a posting's amount is signed minor units, **debit positive, credit negative**;
every entry's postings add up to zero (:func:`_post` refuses any that does not, and
:func:`check_ledger` looks again). A liability's balance is therefore negative: what a seller
is owed is minus its payable account's balance.

A sale of ``gross`` with commission ``c``::

    Dr customer_clearing   gross
    Cr seller_payable      gross - c
    Cr commission_revenue  c

A refund of ``amount`` gives back the commission the refunded share no longer earns: with the
sale's frozen terms ``f`` (:func:`~.commissions.commission_amount`), once ``returned`` of the
gross has been refunded or cancelled the shop keeps ``f(gross - returned)``, so each refund
reverses ``c - f(gross - returned) - already reversed``. ``f`` never decreases, so reversals are
never negative, never add up to more than ``c``, are proportional to the refunded share for a
plain rate (within one minor unit of rounding), and the refund that takes the gross to zero
reverses exactly the rest (``f(0) = 0``)::

    Dr seller_payable      amount - reversal
    Dr commission_revenue  reversal
    Cr refunds             amount          (a cancellation credits customer_clearing instead)

A payout: ``Dr seller_payable, Cr payouts_clearing``.

Every move of one seller's money locks the seller's row first (PostgreSQL ``FOR UPDATE``;
SQLite writes one transaction at a time), so a payout and a refund racing never both read the
same balance. A refund is always recorded, even if it takes the payable below zero (the seller
then owes the shop, and the next statements show it); a payout is refused beyond the payable.
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, func, insert, select, update

from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.marketplace.commissions import Terms, check_amount, commission_amount, commission_for
from mercato.marketplace.common import (
    COMMISSION_LINES,
    JOURNAL_ENTRIES,
    PAYOUTS,
    POSTINGS,
    SELLERS,
)
from mercato.money import MoneyError, to_minor
from mercato.problems import Problem, not_found, validation_problem

LINES = COMMISSION_LINES
ENTRIES = JOURNAL_ENTRIES

CUSTOMER_CLEARING = "customer_clearing"
REFUNDS = "refunds"
COMMISSION_REVENUE = "commission_revenue"
PAYOUTS_CLEARING = "payouts_clearing"
PAYABLE_PREFIX = "seller_payable:"
MAX_REFERENCE = 80
_CURRENCY = re.compile(r"^[A-Z]{3}$")
MONTH_PATTERN = r"^(19[7-9][0-9]|2[0-9]{3})-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


def seller_payable(seller_id: str) -> str:
    return PAYABLE_PREFIX + seller_id


@dataclass(frozen=True, slots=True)
class SaleEntry:
    reference: str
    entry_id: str
    seller_id: str
    category_id: str | None
    currency: str
    gross: int
    commission: int
    terms: Terms
    rule_id: str | None
    sold_at: datetime
    returned: int
    reversed: int

    @property
    def seller_share(self) -> int:
        return self.gross - self.commission


@dataclass(frozen=True, slots=True)
class ReversalEntry:
    """A refund or a cancellation: ``amount`` of the sale's gross given back, ``reversal`` of
    its commission with it (``entry_id`` ``None``: a cancellation with nothing left to undo)."""

    kind: str
    reference: str
    sale_reference: str
    entry_id: str | None
    seller_id: str
    currency: str
    amount: int
    reversal: int

    @property
    def seller_debit(self) -> int:
        return self.amount - self.reversal


@dataclass(frozen=True, slots=True)
class Period:
    """``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @property
    def label(self) -> str:
        last = self.end - timedelta(days=1)
        return f"{self.start.date().isoformat()}..{last.date().isoformat()}"


@dataclass(frozen=True, slots=True)
class PayoutInfo:
    id: str
    seller_id: str
    currency: str
    amount: int
    reference: str
    period: Period
    recorded_by: str | None
    entry_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Statement:
    """A seller's money over a period. ``net`` is what its sales less refunds, cancellations
    and commission added to its payable; ``closing_payable = opening_payable + net - payouts``,
    and both ends are read from the ledger itself."""

    seller_id: str
    currency: str
    period: Period
    opening_payable: int
    sales: int
    refunds: int
    cancellations: int
    commission_charged: int
    commission_reversed: int
    payouts: int
    closing_payable: int

    @property
    def commission(self) -> int:
        return self.commission_charged - self.commission_reversed

    @property
    def net(self) -> int:
        return self.sales - self.refunds - self.cancellations - self.commission


@dataclass(frozen=True, slots=True)
class LedgerDifference:
    entry_id: str
    currency: str
    total: int


class UnbalancedEntry(AssertionError):
    """An entry whose postings do not add up to zero: a bug, never written."""


# --------------------------------------------------------------------------------------------
# Periods


def _bad_range(field: str, message: str) -> Problem:
    return validation_problem(field, message, code="invalid_range")


def month(value: str) -> Period:
    """``"2026-11"``: the calendar month, UTC (years 1970 to 2999)."""
    match = _MONTH.match(value)
    if match is None:
        raise _bad_range("period", 'must be a month such as "2026-11"')
    year, number = int(match.group(1)), int(match.group(2))
    days = calendar.monthrange(year, number)[1]
    start = datetime(year, number, 1, tzinfo=UTC)
    return Period(start, start + timedelta(days=days))


def days(first: date, last: date) -> Period:
    """From ``first`` to ``last``, both days included, UTC."""
    if last < first:
        raise _bad_range("to", "must not be before from")
    if last >= date.max:
        raise _bad_range("to", "is too far ahead")
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return Period(start, datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(1))


def period_of(period: str | None, first: date | None, last: date | None) -> Period:
    """``?period=YYYY-MM``, or ``?from=&to=`` (days), or this month."""
    if period is not None:
        if first is not None or last is not None:
            raise _bad_range("period", "give either period or from and to, not both")
        return month(period)
    if first is not None or last is not None:
        if first is None or last is None:
            raise _bad_range("from" if first is None else "to", "give both from and to")
        return days(first, last)
    return month(utcnow().strftime("%Y-%m"))


# --------------------------------------------------------------------------------------------
# Posting


def _check_reference(field: str, reference: str) -> str:
    if not isinstance(reference, str) or not 1 <= len(reference) <= MAX_REFERENCE:
        raise validation_problem(field, f"must be 1 to {MAX_REFERENCE} characters")
    return reference


def parse_amount(field: str, value: str, currency: str) -> int:
    """A positive decimal string in ``currency`` as minor units (422 naming ``field``)."""
    try:
        minor = to_minor(value, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc
    return check_amount(field, minor)


def _check_currency(currency: str) -> str:
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise validation_problem("currency", "must be an ISO 4217 code such as EUR")
    return currency


async def _lock_seller(uow: UnitOfWork, seller_id: str) -> None:
    """Every money move of one seller passes here first, one at a time."""
    found = await uow.scalar(
        select(SELLERS.c.id).where(SELLERS.c.id == seller_id).with_for_update()
    )
    if found is None:
        raise not_found("Seller", seller_id)


async def _post(
    uow: UnitOfWork,
    *,
    kind: str,
    reference: str,
    key: str,
    seller_id: str,
    currency: str,
    at: datetime,
    postings: Sequence[tuple[str, int]],
) -> str:
    """Write one balanced entry (zero amounts left out) and answer its id."""
    lines = [(account, amount) for account, amount in postings if amount != 0]
    if sum(amount for _, amount in lines) != 0:
        raise UnbalancedEntry(f"{kind} {reference!r}: postings {lines} do not balance")
    entry_id = new_id("je")
    await uow.execute(
        insert(ENTRIES).values(
            id=entry_id,
            kind=kind,
            reference=reference,
            idempotency_key=key,
            seller_id=seller_id,
            currency=currency,
            occurred_at=at,
            created_at=utcnow(),
        )
    )
    if lines:
        await uow.execute(
            insert(POSTINGS),
            [
                {"entry_id": entry_id, "account": a, "currency": currency, "amount": amount}
                for a, amount in lines
            ],
        )
    return entry_id


async def _entry_by_key(uow: UnitOfWork, key: str) -> Row[Any] | None:
    return (await uow.execute(select(ENTRIES).where(ENTRIES.c.idempotency_key == key))).first()


def _conflict(what: str, reference: str) -> Problem:
    return Problem(
        409,
        "idempotency_conflict",
        f"{what} {reference!r} was already recorded with other values",
        title="Conflict",
    )


# --------------------------------------------------------------------------------------------
# Sales


def _sale_entry(row: Row[Any]) -> SaleEntry:
    return SaleEntry(
        reference=row.reference,
        entry_id=row.entry_id,
        seller_id=row.seller_id,
        category_id=row.category_id,
        currency=row.currency,
        gross=int(row.gross),
        commission=int(row.commission),
        terms=Terms(int(row.rate_bp), row.min_commission, row.max_commission),
        rule_id=row.rule_id,
        sold_at=row.sold_at,
        returned=int(row.returned),
        reversed=int(row.reversed),
    )


async def get_sale(uow: UnitOfWork, reference: str) -> SaleEntry | None:
    row = (await uow.execute(select(LINES).where(LINES.c.reference == reference))).first()
    return None if row is None else _sale_entry(row)


async def record_sale(
    uow: UnitOfWork,
    *,
    reference: str,
    seller_id: str,
    category_id: str | None,
    gross: int,
    currency: str,
    at: datetime,
) -> SaleEntry:
    """Freeze the commission of one sale line (by the rule in force at ``at``) and post it.
    Again with the same reference and values: the sale already recorded; other values: 409
    ``idempotency_conflict``."""
    _check_reference("reference", reference)
    check_amount("gross", gross)
    _check_currency(currency)
    await _lock_seller(uow, seller_id)
    existing = await get_sale(uow, reference)
    if existing is not None:
        same = (existing.seller_id, existing.category_id, existing.gross, existing.currency)
        if same != (seller_id, category_id, gross, currency):
            raise _conflict("Sale", reference)
        return existing
    quote = await commission_for(uow, seller_id, category_id, gross, currency, at)
    entry_id = await _post(
        uow,
        kind="sale",
        reference=reference,
        key=f"sale:{reference}",
        seller_id=seller_id,
        currency=currency,
        at=at,
        postings=[
            (CUSTOMER_CLEARING, gross),
            (seller_payable(seller_id), -quote.seller_share),
            (COMMISSION_REVENUE, -quote.commission),
        ],
    )
    await uow.execute(
        insert(LINES).values(
            reference=reference,
            seller_id=seller_id,
            category_id=category_id,
            currency=currency,
            gross=gross,
            rate_bp=quote.terms.rate_bp,
            min_commission=quote.terms.min_commission,
            max_commission=quote.terms.max_commission,
            commission=quote.commission,
            rule_id=quote.rule_id,
            entry_id=entry_id,
            sold_at=at,
            returned=0,
            reversed=0,
        )
    )
    found = await get_sale(uow, reference)
    assert found is not None
    return found


# --------------------------------------------------------------------------------------------
# Refunds and cancellations


def reversal_for(sale: SaleEntry, amount: int) -> int:
    """The commission a further ``amount`` of refund gives back: what the shop would keep of
    the gross still kept before, less what it keeps of it after, by the sale's frozen terms."""
    kept_after = sale.gross - sale.returned - amount
    return sale.commission - commission_amount(kept_after, sale.terms) - sale.reversed


async def _locked_sale(uow: UnitOfWork, sale_reference: str) -> SaleEntry:
    sale = await get_sale(uow, sale_reference)
    if sale is None:
        raise not_found("Sale", sale_reference)
    await _lock_seller(uow, sale.seller_id)
    # Read again under the lock: a refund committed meanwhile has moved ``returned``.
    fresh = await get_sale(uow, sale_reference)
    assert fresh is not None
    return fresh


async def _reversal_of(uow: UnitOfWork, entry: Row[Any], sale: SaleEntry) -> ReversalEntry:
    rows = await uow.execute(
        select(POSTINGS.c.account, POSTINGS.c.amount).where(POSTINGS.c.entry_id == entry.id)
    )
    by_account = {r.account: int(r.amount) for r in rows}
    amount = -by_account.get(REFUNDS if entry.kind == "refund" else CUSTOMER_CLEARING, 0)
    return ReversalEntry(
        kind=entry.kind,
        reference=entry.reference,
        sale_reference=sale.reference,
        entry_id=entry.id,
        seller_id=sale.seller_id,
        currency=sale.currency,
        amount=amount,
        reversal=by_account.get(COMMISSION_REVENUE, 0),
    )


async def _reverse(
    uow: UnitOfWork, sale: SaleEntry, kind: str, reference: str, key: str, amount: int, at: datetime
) -> ReversalEntry:
    reversal = reversal_for(sale, amount)
    entry_id = await _post(
        uow,
        kind=kind,
        reference=reference,
        key=key,
        seller_id=sale.seller_id,
        currency=sale.currency,
        at=at,
        postings=[
            (seller_payable(sale.seller_id), amount - reversal),
            (COMMISSION_REVENUE, reversal),
            (REFUNDS if kind == "refund" else CUSTOMER_CLEARING, -amount),
        ],
    )
    changed = await uow.changed(
        update(LINES)
        .where(LINES.c.reference == sale.reference, LINES.c.returned == sale.returned)
        .values(returned=sale.returned + amount, reversed=sale.reversed + reversal)
    )
    assert changed == 1, "the seller's lock keeps the line as it was read"
    return ReversalEntry(
        kind, reference, sale.reference, entry_id, sale.seller_id, sale.currency, amount, reversal
    )


async def record_refund(
    uow: UnitOfWork, *, reference: str, sale_reference: str, amount: int, at: datetime
) -> ReversalEntry:
    """Pay ``amount`` of a sale back to the customer, giving back the commission that share no
    longer earns. More than is left of the sale: 409 ``refund_exceeds_sale``. Again with the
    same reference: the refund already recorded (other values: 409 ``idempotency_conflict``)."""
    _check_reference("reference", reference)
    check_amount("amount", amount)
    sale = await _locked_sale(uow, sale_reference)
    key = f"refund:{reference}"
    existing = await _entry_by_key(uow, key)
    if existing is not None:
        done = await _reversal_of(uow, existing, sale)
        if existing.seller_id != sale.seller_id or done.amount != amount:
            raise _conflict("Refund", reference)
        return done
    left = sale.gross - sale.returned
    if amount > left:
        raise Problem(
            409,
            "refund_exceeds_sale",
            f"Only {left} minor units of sale {sale.reference!r} are left to refund",
            title="Conflict",
            remaining=left,
        )
    return await _reverse(uow, sale, "refund", reference, key, amount, at)


async def record_cancellation(
    uow: UnitOfWork, *, sale_reference: str, at: datetime
) -> ReversalEntry:
    """Undo what is left of a sale that will not happen (cancelled before it shipped): the
    rest of its gross back to the customer's payment, the rest of its commission back to the
    seller. Once per sale; again: the cancellation already recorded."""
    _check_reference("sale_reference", sale_reference)
    sale = await _locked_sale(uow, sale_reference)
    key = f"cancel:{sale_reference}"
    existing = await _entry_by_key(uow, key)
    if existing is not None:
        return await _reversal_of(uow, existing, sale)
    left = sale.gross - sale.returned
    if left == 0:
        return ReversalEntry(
            "cancellation", sale_reference, sale_reference, None, sale.seller_id,
            sale.currency, 0, 0,
        )  # fmt: skip
    return await _reverse(uow, sale, "cancellation", sale_reference, key, left, at)


# --------------------------------------------------------------------------------------------
# Balances, payouts, statements


async def payable_balance(uow: UnitOfWork, seller_id: str, currency: str) -> int:
    """What the shop owes the seller now (negative: what the seller owes the shop)."""
    total = await uow.scalar(
        select(func.coalesce(func.sum(POSTINGS.c.amount), 0)).where(
            POSTINGS.c.account == seller_payable(seller_id), POSTINGS.c.currency == currency
        )
    )
    return -int(total or 0)


def _payout_info(row: Row[Any]) -> PayoutInfo:
    return PayoutInfo(
        id=row.id,
        seller_id=row.seller_id,
        currency=row.currency,
        amount=int(row.amount),
        reference=row.reference,
        period=Period(row.period_start, row.period_end),
        recorded_by=row.recorded_by,
        entry_id=row.entry_id,
        created_at=row.created_at,
    )


async def record_payout(
    uow: UnitOfWork,
    *,
    seller_id: str,
    amount: int,
    currency: str,
    reference: str,
    period: Period,
    recorded_by: str | None = None,
) -> PayoutInfo:
    """Record money paid out to a seller for ``period`` (the provider's transfer
    ``reference``). More than the seller is owed: 409 ``payout_exceeds_balance``; again with
    the same reference: the payout already recorded (other values: 409
    ``idempotency_conflict``)."""
    _check_reference("reference", reference)
    check_amount("amount", amount)
    _check_currency(currency)
    await _lock_seller(uow, seller_id)
    row = (await uow.execute(select(PAYOUTS).where(PAYOUTS.c.reference == reference))).first()
    if row is not None:
        done = _payout_info(row)
        if (done.seller_id, done.amount, done.currency) != (seller_id, amount, currency):
            raise _conflict("Payout", reference)
        return done
    owed = await payable_balance(uow, seller_id, currency)
    if amount > owed:
        raise Problem(
            409,
            "payout_exceeds_balance",
            f"The seller is owed {max(owed, 0)} minor units of {currency}",
            title="Conflict",
            payable=owed,
        )
    at = utcnow()
    entry_id = await _post(
        uow,
        kind="payout",
        reference=reference,
        key=f"payout:{reference}",
        seller_id=seller_id,
        currency=currency,
        at=at,
        postings=[(seller_payable(seller_id), amount), (PAYOUTS_CLEARING, -amount)],
    )
    payout_id = new_id("po")
    await uow.execute(
        insert(PAYOUTS).values(
            id=payout_id,
            seller_id=seller_id,
            currency=currency,
            amount=amount,
            reference=reference,
            period_start=period.start,
            period_end=period.end,
            recorded_by=recorded_by,
            entry_id=entry_id,
            created_at=at,
        )
    )
    row = (await uow.execute(select(PAYOUTS).where(PAYOUTS.c.id == payout_id))).first()
    assert row is not None
    return _payout_info(row)


async def _payable_before(uow: UnitOfWork, seller_id: str, currency: str, at: datetime) -> int:
    total = await uow.scalar(
        select(func.coalesce(func.sum(POSTINGS.c.amount), 0))
        .select_from(POSTINGS.join(ENTRIES, ENTRIES.c.id == POSTINGS.c.entry_id))
        .where(
            POSTINGS.c.account == seller_payable(seller_id),
            POSTINGS.c.currency == currency,
            ENTRIES.c.occurred_at < at,
        )
    )
    return -int(total or 0)


async def statement(uow: UnitOfWork, seller_id: str, period: Period, currency: str) -> Statement:
    """The seller's sales, refunds, cancellations, commission and payouts of the period (by
    when each happened), and what it was owed at its start and end."""
    rows = await uow.execute(
        select(ENTRIES.c.kind, POSTINGS.c.account, func.sum(POSTINGS.c.amount).label("total"))
        .select_from(POSTINGS.join(ENTRIES, ENTRIES.c.id == POSTINGS.c.entry_id))
        .where(
            ENTRIES.c.seller_id == seller_id,
            POSTINGS.c.currency == currency,
            ENTRIES.c.occurred_at >= period.start,
            ENTRIES.c.occurred_at < period.end,
        )
        .group_by(ENTRIES.c.kind, POSTINGS.c.account)
    )
    sums: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        sums[(r.kind, r.account)] = int(r.total)
    return Statement(
        seller_id=seller_id,
        currency=currency,
        period=period,
        opening_payable=await _payable_before(uow, seller_id, currency, period.start),
        sales=sums[("sale", CUSTOMER_CLEARING)],
        refunds=-sums[("refund", REFUNDS)],
        cancellations=-sums[("cancellation", CUSTOMER_CLEARING)],
        commission_charged=-sums[("sale", COMMISSION_REVENUE)],
        commission_reversed=sums[("refund", COMMISSION_REVENUE)]
        + sums[("cancellation", COMMISSION_REVENUE)],
        payouts=-sums[("payout", PAYOUTS_CLEARING)],
        closing_payable=await _payable_before(uow, seller_id, currency, period.end),
    )


async def sellers_with_entries(uow: UnitOfWork, currency: str, before: datetime) -> list[str]:
    rows = await uow.execute(
        select(ENTRIES.c.seller_id)
        .where(ENTRIES.c.currency == currency, ENTRIES.c.occurred_at < before)
        .distinct()
        .order_by(ENTRIES.c.seller_id)
    )
    return [r.seller_id for r in rows]


async def list_payouts(uow: UnitOfWork, seller_id: str | None = None) -> list[PayoutInfo]:
    query = select(PAYOUTS).order_by(PAYOUTS.c.created_at, PAYOUTS.c.id)
    if seller_id is not None:
        query = query.where(PAYOUTS.c.seller_id == seller_id)
    return [_payout_info(r) for r in await uow.execute(query)]


async def account_balances(uow: UnitOfWork) -> dict[tuple[str, str], int]:
    """Every account's balance by (account, currency), debit positive."""
    rows = await uow.execute(
        select(
            POSTINGS.c.account, POSTINGS.c.currency, func.sum(POSTINGS.c.amount).label("balance")
        )
        .group_by(POSTINGS.c.account, POSTINGS.c.currency)
        .order_by(POSTINGS.c.account, POSTINGS.c.currency)
    )
    return {(r.account, r.currency): int(r.balance) for r in rows}


async def check_ledger(uow: UnitOfWork) -> list[LedgerDifference]:
    """Entries whose postings do not add up to zero in some currency (none, always), and
    postings in another currency than their entry's."""
    unbalanced = await uow.execute(
        select(POSTINGS.c.entry_id, POSTINGS.c.currency, func.sum(POSTINGS.c.amount).label("total"))
        .group_by(POSTINGS.c.entry_id, POSTINGS.c.currency)
        .having(func.sum(POSTINGS.c.amount) != 0)
    )
    found = [LedgerDifference(r.entry_id, r.currency, int(r.total)) for r in unbalanced]
    mixed = await uow.execute(
        select(POSTINGS.c.entry_id, POSTINGS.c.currency, POSTINGS.c.amount)
        .select_from(POSTINGS.join(ENTRIES, ENTRIES.c.id == POSTINGS.c.entry_id))
        .where(POSTINGS.c.currency != ENTRIES.c.currency)
    )
    found += [LedgerDifference(r.entry_id, r.currency, int(r.amount)) for r in mixed]
    return sorted(found, key=lambda d: (d.entry_id, d.currency))


async def seller_statements(
    uow: UnitOfWork, scope: str | None, seller_id: str | None, period: Period, currency: str
) -> list[Statement]:
    """Statements as the caller may see them: a seller's account its own seller's only
    (another's is a 404, as if it did not exist); staff ``seller_id``'s, or every seller's with
    entries up to the period's end."""
    if scope is not None:
        if seller_id is not None and seller_id != scope:
            raise not_found("Seller", seller_id)
        wanted = [scope]
    elif seller_id is not None:
        if await uow.scalar(select(SELLERS.c.id).where(SELLERS.c.id == seller_id)) is None:
            raise not_found("Seller", seller_id)
        wanted = [seller_id]
    else:
        wanted = await sellers_with_entries(uow, currency, period.end)
    return [await statement(uow, s, period, currency) for s in wanted]
