"""Commission rules: what the shop keeps of each sale a seller makes.

A rule has a scope (a seller, a category, both, or neither: the default), a rate in basis points
(0 to 10,000, i.e. 0 to 100 %) with an optional minimum and maximum in minor units of its
currency, and a validity window ``[valid_from, valid_to)``. For a sale, the most specific
active rule valid at the moment of the sale wins:

    seller + category  >  seller  >  category  >  default

Two active rules of the same scope and currency may not overlap in time, so the winner is
always one rule. With no rule at all the commission is zero (``rule_id`` ``None``): staff set a
default rule to charge every seller.

The amount (:func:`commission_amount`) is ``gross * rate_bp / 10000`` rounded half-up to the
minor unit, then raised to the minimum, lowered to the maximum and never above the gross.
It is non-decreasing in the gross, which refunds rely on (see :mod:`.ledger`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Row, and_, insert, or_, select, text, update

from mercato.catalog import service as catalog
from mercato.db import UnitOfWork, utcnow
from mercato.ids import new_id
from mercato.marketplace.common import COMMISSION_RULES, get_seller
from mercato.marketplace.models import MAX_RATE_BP
from mercato.money import MAX_MINOR, MoneyError, to_minor
from mercato.problems import Problem, not_found, validation_problem

RULES = COMMISSION_RULES

SCOPES: tuple[str, ...] = ("seller_category", "seller", "category", "default")
"""The scopes, most specific first: the first one with a valid rule decides."""


@dataclass(frozen=True, slots=True)
class Terms:
    """How a commission is computed: frozen on each sale, so later rule changes never
    reprice it."""

    rate_bp: int
    min_commission: int | None = None
    max_commission: int | None = None


@dataclass(frozen=True, slots=True)
class CommissionQuote:
    gross: int
    currency: str
    commission: int
    terms: Terms
    rule_id: str | None
    scope: str | None
    """Which scope the rule was found at (``None``: no rule, zero commission)."""

    @property
    def seller_share(self) -> int:
        return self.gross - self.commission


@dataclass(frozen=True, slots=True)
class RuleInfo:
    id: str
    seller_id: str | None
    category_id: str | None
    rate_bp: int
    min_commission: int | None
    max_commission: int | None
    currency: str
    valid_from: datetime
    valid_to: datetime | None
    active: bool
    created_at: datetime
    deactivated_at: datetime | None

    @property
    def scope(self) -> str:
        if self.seller_id is not None:
            return "seller_category" if self.category_id is not None else "seller"
        return "category" if self.category_id is not None else "default"


@dataclass(frozen=True, slots=True)
class RuleDraft:
    """A new rule as staff give it: the rate as a percentage string (``"12.5"``), the bounds as
    decimal strings in ``currency``."""

    rate: str
    currency: str
    seller_id: str | None = None
    category_id: str | None = None
    min_commission: str | None = None
    max_commission: str | None = None
    valid_from: datetime | None = None
    valid_to: datetime | None = None


def rounded_half_up(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` to the nearest integer, halves away from zero (both >= 0)."""
    return (2 * numerator + denominator) // (2 * denominator)


def commission_amount(gross: int, terms: Terms) -> int:
    """The commission on ``gross``: the rate rounded half-up, clamped to the minimum and the
    maximum, and never more than the gross itself (a seller never owes for selling)."""
    amount = rounded_half_up(gross * terms.rate_bp, MAX_RATE_BP)
    if terms.min_commission is not None:
        amount = max(amount, terms.min_commission)
    if terms.max_commission is not None:
        amount = min(amount, terms.max_commission)
    return max(0, min(amount, gross))


def rule_info(row: Row[Any]) -> RuleInfo:
    return RuleInfo(
        id=row.id,
        seller_id=row.seller_id,
        category_id=row.category_id,
        rate_bp=int(row.rate_bp),
        min_commission=row.min_commission,
        max_commission=row.max_commission,
        currency=row.currency,
        valid_from=row.valid_from,
        valid_to=row.valid_to,
        active=bool(row.active),
        created_at=row.created_at,
        deactivated_at=row.deactivated_at,
    )


def _scope_of(rule: RuleInfo, seller_id: str, category_id: str | None) -> int | None:
    """The rule's rank for this sale (0 most specific), ``None`` when it does not apply."""
    if rule.seller_id not in (None, seller_id):
        return None
    if rule.category_id is not None and rule.category_id != category_id:
        return None
    return SCOPES.index(rule.scope)


async def resolve_rule(
    uow: UnitOfWork, seller_id: str, category_id: str | None, currency: str, at: datetime
) -> RuleInfo | None:
    """The active rule valid at ``at`` with the most specific scope for the sale."""
    query = select(RULES).where(
        RULES.c.active.is_(True),
        RULES.c.currency == currency,
        RULES.c.valid_from <= at,
        or_(RULES.c.valid_to.is_(None), RULES.c.valid_to > at),
        or_(RULES.c.seller_id.is_(None), RULES.c.seller_id == seller_id),
        or_(RULES.c.category_id.is_(None), RULES.c.category_id == category_id),
    )
    ranked = [
        (rank, rule)
        for rule in map(rule_info, await uow.execute(query))
        if (rank := _scope_of(rule, seller_id, category_id)) is not None
    ]
    return min(ranked, key=lambda r: (r[0], r[1].id))[1] if ranked else None


async def commission_for(
    uow: UnitOfWork,
    seller_id: str,
    category_id: str | None,
    gross: int,
    currency: str,
    at: datetime,
) -> CommissionQuote:
    """What the shop keeps of a sale of ``gross`` minor units, by the rule in force at ``at``."""
    check_amount("gross", gross)
    rule = await resolve_rule(uow, seller_id, category_id, currency, at)
    if rule is None:
        return CommissionQuote(gross, currency, 0, Terms(0), None, None)
    terms = Terms(rule.rate_bp, rule.min_commission, rule.max_commission)
    return CommissionQuote(
        gross, currency, commission_amount(gross, terms), terms, rule.id, rule.scope
    )


def check_amount(field: str, amount: int, *, allow_zero: bool = False) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise validation_problem(field, "must be a whole number of minor units")
    if amount < 0 or (amount == 0 and not allow_zero) or amount > MAX_MINOR:
        lowest = 0 if allow_zero else 1
        raise validation_problem(field, f"must be between {lowest} and {MAX_MINOR} minor units")
    return amount


# --------------------------------------------------------------------------------------------
# Staff's rules


def parse_rate(value: str) -> int:
    """A percentage (``"12.5"``, at most two decimals) as basis points, 0 to 10,000."""
    try:
        percent = Decimal(value.strip())
    except InvalidOperation as exc:
        raise validation_problem("rate", 'must be a percentage such as "12.5"') from exc
    if not percent.is_finite() or not 0 <= percent <= 100:
        raise validation_problem("rate", "must be between 0 and 100 (per cent)")
    bp = percent * 100
    if bp != bp.to_integral_value():
        raise validation_problem("rate", "has two decimal places at most")
    return int(bp)


def _bound(field: str, value: str | None, currency: str) -> int | None:
    if value is None:
        return None
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc


async def _category_exists(uow: UnitOfWork, category_id: str) -> bool:
    # The catalog answers the tree, not one category by id; rules are written rarely.
    pending = list(await catalog.get_category_tree(uow))
    while pending:
        node = pending.pop()
        if node.category.id == category_id:
            return True
        pending.extend(node.children)
    return False


async def _check_scope(uow: UnitOfWork, seller_id: str | None, category_id: str | None) -> None:
    if seller_id is not None and await get_seller(uow, seller_id) is None:
        raise validation_problem("seller_id", f"no seller {seller_id!r}", code="unknown_seller")
    if category_id is not None and not await _category_exists(uow, category_id):
        raise validation_problem(
            "category_id", f"no category {category_id!r}", code="unknown_category"
        )


async def _lock_scope(uow: UnitOfWork, draft: RuleDraft) -> None:
    """Serialise rule writes of one scope, so two overlapping rules cannot both pass the check
    (SQLite already writes one transaction at a time)."""
    if uow.is_sqlite:
        return
    key = f"commission-rule:{draft.seller_id}:{draft.category_id}:{draft.currency}"
    await uow.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})


async def _overlapping(uow: UnitOfWork, draft: RuleDraft, start: datetime) -> str | None:
    def same(column: Any, value: str | None) -> Any:
        return column.is_(None) if value is None else column == value

    query = select(RULES.c.id).where(
        RULES.c.active.is_(True),
        same(RULES.c.seller_id, draft.seller_id),
        same(RULES.c.category_id, draft.category_id),
        RULES.c.currency == draft.currency,
        or_(RULES.c.valid_to.is_(None), RULES.c.valid_to > start),
    )
    if draft.valid_to is not None:
        query = query.where(RULES.c.valid_from < draft.valid_to)
    return await uow.scalar(query.order_by(RULES.c.id).limit(1))


async def create_rule(uow: UnitOfWork, draft: RuleDraft, created_by: str | None) -> RuleInfo:
    """A new active rule. Refused with a 422 naming the field: a rate outside 0-100 %, a
    negative or over-precise bound, a minimum above the maximum, a window that ends before it
    starts, an unknown seller or category; with a 409 ``commission_rule_overlap`` (naming
    ``valid_from``): an active rule of the same scope and currency valid at the same time."""
    rate_bp = parse_rate(draft.rate)
    low = _bound("min_commission", draft.min_commission, draft.currency)
    high = _bound("max_commission", draft.max_commission, draft.currency)
    if low is not None and high is not None and low > high:
        raise validation_problem("max_commission", "must not be less than min_commission")
    start = draft.valid_from or utcnow()
    if draft.valid_to is not None and draft.valid_to <= start:
        raise validation_problem("valid_to", "must be after valid_from")
    await _check_scope(uow, draft.seller_id, draft.category_id)
    await _lock_scope(uow, draft)
    clash = await _overlapping(uow, draft, start)
    if clash is not None:
        raise Problem(
            409,
            "commission_rule_overlap",
            f"Rule {clash!r} of the same scope and currency is valid at the same time",
            title="Conflict",
            rule_id=clash,
            errors=[
                {
                    "field": "valid_from",
                    "message": f"overlaps rule {clash!r}",
                    "type": "commission_rule_overlap",
                }
            ],
        )
    rule_id = new_id("cr")
    await uow.execute(
        insert(RULES).values(
            id=rule_id,
            seller_id=draft.seller_id,
            category_id=draft.category_id,
            rate_bp=rate_bp,
            min_commission=low,
            max_commission=high,
            currency=draft.currency,
            valid_from=start,
            valid_to=draft.valid_to,
            active=True,
            created_by=created_by,
            created_at=utcnow(),
        )
    )
    return await get_rule(uow, rule_id)


async def get_rule(uow: UnitOfWork, rule_id: str) -> RuleInfo:
    row = (await uow.execute(select(RULES).where(RULES.c.id == rule_id))).first()
    if row is None:
        raise not_found("Commission rule", rule_id)
    return rule_info(row)


async def list_rules(
    uow: UnitOfWork, *, seller_id: str | None = None, include_inactive: bool = False
) -> list[RuleInfo]:
    """Rules, most specific scope first, then by start (newest first)."""
    query = select(RULES)
    if seller_id is not None:
        query = query.where(or_(RULES.c.seller_id.is_(None), RULES.c.seller_id == seller_id))
    if not include_inactive:
        query = query.where(RULES.c.active.is_(True))
    found = [rule_info(r) for r in await uow.execute(query)]
    return sorted(found, key=lambda r: (SCOPES.index(r.scope), -r.valid_from.timestamp(), r.id))


async def deactivate_rule(uow: UnitOfWork, rule_id: str) -> RuleInfo:
    """Take a rule out of force from now on (sales already priced keep its terms). Again on a
    deactivated rule: nothing changes."""
    await uow.execute(
        update(RULES)
        .where(and_(RULES.c.id == rule_id, RULES.c.active.is_(True)))
        .values(active=False, deactivated_at=utcnow())
    )
    return await get_rule(uow, rule_id)
