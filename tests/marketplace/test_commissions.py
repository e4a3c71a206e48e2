"""Commission rules: rounding and clamps checked by hand, precedence and validity windows, bad
input refused naming the field with nothing written, and who may use the money endpoints."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from mercato.db import Database, utcnow
from mercato.marketplace import service
from mercato.marketplace.commissions import parse_rate, rounded_half_up
from mercato.problems import Problem
from tests.conftest import user_headers
from tests.marketplace.conftest import add_category, add_seller, approved_seller, runtime_of

RULES = "/api/admin/commission-rules"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------------
# Arithmetic (no database)


@pytest.mark.parametrize(
    ("gross", "terms", "expected"),
    [
        (1000, service.Terms(1250), 125),  # exact
        (999, service.Terms(1250), 125),  # 124.875 -> 125
        (4, service.Terms(1250), 1),  # 0.5 -> 1: halves go up
        (3, service.Terms(1250), 0),  # 0.375 -> 0
        (12, service.Terms(1250), 2),  # 1.5 -> 2
        (1000, service.Terms(0), 0),
        (1000, service.Terms(10_000), 1000),
        (1000, service.Terms(500, min_commission=80), 80),  # 50 raised to the minimum
        (1000, service.Terms(500, max_commission=30), 30),  # 50 lowered to the maximum
        (60, service.Terms(500, min_commission=80), 60),  # never more than the gross
        (0, service.Terms(500, min_commission=80), 0),  # nothing kept, nothing charged
        (10_000, service.Terms(1000, min_commission=50, max_commission=700), 700),
    ],
)
def test_commission_amount_by_hand(gross: int, terms: service.Terms, expected: int) -> None:
    assert service.commission_amount(gross, terms) == expected


def test_rounding_half_up_is_exact_on_large_amounts() -> None:
    assert rounded_half_up(10**15 * 1234 + 5000, 10_000) == 10**11 * 1234 + 1
    assert rounded_half_up(10**15 * 1234 + 4999, 10_000) == 10**11 * 1234


@pytest.mark.parametrize(
    ("text", "bp"), [("0", 0), ("12.5", 1250), ("12.50", 1250), ("100", 10_000), ("0.01", 1)]
)
def test_rates_are_percentages(text: str, bp: int) -> None:
    assert parse_rate(text) == bp


@pytest.mark.parametrize("text", ["100.01", "-1", "150", "1.005", "abc", "NaN"])
def test_rates_outside_zero_to_hundred_are_refused(text: str) -> None:
    with pytest.raises(Problem) as refused:
        parse_rate(text)
    assert refused.value.status == 422
    assert refused.value.extra["errors"][0]["field"] == "rate"


# --------------------------------------------------------------------------------------------
# Precedence and validity


@pytest.mark.usefixtures("backend")
async def test_most_specific_rule_wins(db: Database) -> None:
    alpha = await add_seller(db, "sel_alpha")
    beta = await add_seller(db, "sel_beta")
    books = await add_category(db, "Books")
    toys = await add_category(db, "Toys")
    async with db.transaction() as uow:
        default = await service.create_rule(
            uow, service.RuleDraft(rate="10", currency="EUR", valid_from=T0), None
        )
        category = await service.create_rule(
            uow, service.RuleDraft(rate="8", currency="EUR", category_id=books, valid_from=T0), None
        )
        seller = await service.create_rule(
            uow, service.RuleDraft(rate="12", currency="EUR", seller_id=alpha, valid_from=T0), None
        )
        both = await service.create_rule(
            uow,
            service.RuleDraft(
                rate="5", currency="EUR", seller_id=alpha, category_id=books, valid_from=T0
            ),
            None,
        )
    at = T0 + timedelta(days=3)
    cases = [
        (alpha, books, both.id, 50, "seller_category"),
        (alpha, toys, seller.id, 120, "seller"),
        (alpha, None, seller.id, 120, "seller"),
        (beta, books, category.id, 80, "category"),
        (beta, toys, default.id, 100, "default"),
        (beta, None, default.id, 100, "default"),
    ]
    async with db.transaction() as uow:
        for seller_id, category_id, rule_id, commission, scope in cases:
            quote = await service.commission_for(uow, seller_id, category_id, 1000, "EUR", at)
            assert (quote.rule_id, quote.commission, quote.scope) == (rule_id, commission, scope)
            assert quote.seller_share == 1000 - commission
        # Another currency has no rule: nothing is charged, and the quote says why.
        quote = await service.commission_for(uow, alpha, books, 1000, "GBP", at)
        assert (quote.rule_id, quote.commission, quote.scope) == (None, 0, None)
        # Before any rule was valid, and after the seller's rule is deactivated.
        early = await service.commission_for(uow, alpha, books, 1000, "EUR", T0 - timedelta(1))
        assert early.rule_id is None
        await service.deactivate_rule(uow, both.id)
        after = await service.commission_for(uow, alpha, books, 1000, "EUR", at)
        assert after.rule_id == seller.id


@pytest.mark.usefixtures("backend")
async def test_validity_windows_follow_each_other(db: Database) -> None:
    seller_id = await add_seller(db, "sel_alpha")
    switch = T0 + timedelta(days=30)
    async with db.transaction() as uow:
        first = await service.create_rule(
            uow,
            service.RuleDraft(
                rate="10", currency="EUR", seller_id=seller_id, valid_from=T0, valid_to=switch
            ),
            None,
        )
        second = await service.create_rule(
            uow,
            service.RuleDraft(rate="15", currency="EUR", seller_id=seller_id, valid_from=switch),
            None,
        )
        before = await service.commission_for(
            uow, seller_id, None, 1000, "EUR", switch - timedelta(microseconds=1)
        )
        at_switch = await service.commission_for(uow, seller_id, None, 1000, "EUR", switch)
    assert (before.rule_id, before.commission) == (first.id, 100)
    assert (at_switch.rule_id, at_switch.commission) == (second.id, 150)


# --------------------------------------------------------------------------------------------
# The endpoints


async def _rules(client: httpx.AsyncClient, staff: dict[str, str]) -> list[dict[str, object]]:
    r = await client.get(RULES, headers=staff, params={"include_inactive": "true"})
    assert r.status_code == 200, r.text
    rules: list[dict[str, object]] = r.json()
    return rules


@pytest.mark.usefixtures("backend")
async def test_bad_rules_are_refused_naming_the_field(
    client: httpx.AsyncClient, app: FastAPI, staff_headers: dict[str, str]
) -> None:
    seller_id = await add_seller(runtime_of(app).db, "sel_alpha")
    good = {"rate": "10", "seller_id": seller_id, "valid_from": "2026-01-01T00:00:00Z"}
    r = await client.post(RULES, headers=staff_headers, json=good)
    assert r.status_code == 201, r.text
    rule = r.json()
    assert (rule["rate"], rule["rate_bp"], rule["scope"], rule["currency"]) == (
        "10.00",
        1000,
        "seller",
        "EUR",
    )
    bad = [
        ({"rate": "100.5"}, 422, "rate"),
        ({"rate": "150"}, 422, "rate"),
        ({"rate": "-5"}, 422, "rate"),
        ({"rate": "5", "min_commission": "-1.00"}, 422, "min_commission"),
        ({"rate": "5", "max_commission": "-0.01"}, 422, "max_commission"),
        ({"rate": "5", "min_commission": "5.00", "max_commission": "4.99"}, 422, "max_commission"),
        ({"rate": "5", "min_commission": "1.001"}, 422, "min_commission"),
        (
            {"rate": "5", "valid_from": "2027-01-01T00:00:00Z", "valid_to": "2026-01-01T00:00:00Z"},
            422,
            "valid_to",
        ),
        ({"rate": "5", "seller_id": "sel_nobody"}, 422, "seller_id"),
        ({"rate": "5", "category_id": "cat_nothing"}, 422, "category_id"),
        # The same scope, valid at an overlapping time (open-ended overlaps everything after).
        ({"rate": "12", "seller_id": seller_id, "valid_from": "2026-06-01T00:00:00Z"}, 409, None),
        (
            {
                "rate": "12",
                "seller_id": seller_id,
                "valid_from": "2025-01-01T00:00:00Z",
                "valid_to": "2026-01-02T00:00:00Z",
            },
            409,
            None,
        ),
    ]
    for body, status, field in bad:
        r = await client.post(RULES, headers=staff_headers, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        named = [e["field"] for e in problem.get("errors", [])]
        if status == 409:
            assert problem["code"] == "commission_rule_overlap"
            assert problem["rule_id"] == rule["id"] and named == ["valid_from"]
        else:
            assert field in named, (body, problem)
    assert [r["id"] for r in await _rules(client, staff_headers)] == [rule["id"]]
    # A window that ends where the rule begins does not overlap it.
    r = await client.post(
        RULES,
        headers=staff_headers,
        json={
            "rate": "12",
            "seller_id": seller_id,
            "valid_from": "2025-01-01T00:00:00Z",
            "valid_to": "2026-01-01T00:00:00Z",
        },
    )
    assert r.status_code == 201, r.text
    # Deactivated, a rule no longer blocks its scope; deleting again changes nothing.
    r = await client.delete(f"{RULES}/{rule['id']}", headers=staff_headers)
    assert r.status_code == 200 and r.json()["active"] is False
    again = await client.delete(f"{RULES}/{rule['id']}", headers=staff_headers)
    assert again.json()["deactivated_at"] == r.json()["deactivated_at"]
    r = await client.post(RULES, headers=staff_headers, json={**good, "rate": "11"})
    assert r.status_code == 201, r.text
    r = await client.delete(f"{RULES}/cr_nothing", headers=staff_headers)
    assert r.status_code == 404


@pytest.mark.usefixtures("backend")
async def test_who_may_use_the_money_endpoints(
    client: httpx.AsyncClient,
    app: FastAPI,
    staff_headers: dict[str, str],
    customer_headers: dict[str, str],
) -> None:
    alpha = await approved_seller(client, app, staff_headers, "Alpha")
    beta = await approved_seller(client, app, staff_headers, "Beta")
    db = runtime_of(app).db
    now = utcnow()
    async with db.transaction() as uow:
        await service.create_rule(
            uow, service.RuleDraft(rate="10", currency="EUR", valid_from=T0), None
        )
    async with db.transaction() as uow:
        for n, s in enumerate((alpha, beta)):
            await service.record_sale(
                uow,
                reference=f"line-{n}",
                seller_id=s.seller_id,
                category_id=None,
                gross=2000 * (n + 1),
                currency="EUR",
                at=now,
            )
    payout = {"seller_id": alpha.seller_id, "amount": "10.00", "reference": "tr-1"}
    month = now.strftime("%Y-%m")

    # Anonymous: 401 everywhere; a customer: 403; a seller: 403 on staff's endpoints.
    for headers, status in (({}, 401), (customer_headers, 403), (alpha.headers, 403)):
        assert (await client.get(RULES, headers=headers)).status_code == status
        r = await client.post(RULES, headers=headers, json={"rate": "5"})
        assert r.status_code == status
        assert (
            await client.post("/api/admin/payouts", headers=headers, json=payout)
        ).status_code == status
    for headers, status in (({}, 401), (customer_headers, 403)):
        r = await client.get("/api/seller/statements", headers=headers)
        assert r.status_code == status

    # A seller sees its own statement only; another seller's is a 404, as if it did not exist.
    r = await client.get("/api/seller/statements", headers=alpha.headers, params={"period": month})
    assert r.status_code == 200, r.text
    [own] = r.json()
    assert own["seller_id"] == alpha.seller_id
    assert (own["sales"], own["commission"], own["net"], own["closing_payable"]) == (
        "20.00",
        "2.00",
        "18.00",
        "18.00",
    )
    r = await client.get(
        "/api/seller/statements", headers=alpha.headers, params={"seller_id": beta.seller_id}
    )
    assert r.status_code == 404
    # Staff see everyone's, or one seller's.
    r = await client.get("/api/seller/statements", headers=staff_headers)
    assert {s["seller_id"] for s in r.json()} == {alpha.seller_id, beta.seller_id}
    r = await client.get(
        "/api/seller/statements", headers=staff_headers, params={"seller_id": beta.seller_id}
    )
    assert [s["net"] for s in r.json()] == ["36.00"]
    # Period by days; both forms at once, or half of one, is a range problem.
    today = now.date().isoformat()
    r = await client.get(
        "/api/seller/statements", headers=alpha.headers, params={"from": today, "to": today}
    )
    assert r.json()[0]["sales"] == "20.00"
    for params in ({"from": today}, {"period": month, "from": today, "to": today}):
        r = await client.get("/api/seller/statements", headers=alpha.headers, params=params)
        assert r.status_code == 422 and r.json()["code"] == "invalid_range"

    # Payouts: recorded once per reference, never beyond what the seller is owed.
    r = await client.post("/api/admin/payouts", headers=staff_headers, json=payout)
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["amount"] == "10.00" and first["period_start"].startswith(month)
    r = await client.post("/api/admin/payouts", headers=staff_headers, json=payout)
    assert r.status_code == 201 and r.json()["id"] == first["id"]
    r = await client.post(
        "/api/admin/payouts", headers=staff_headers, json={**payout, "amount": "11.00"}
    )
    assert r.status_code == 409 and r.json()["code"] == "idempotency_conflict"
    r = await client.post(
        "/api/admin/payouts",
        headers=staff_headers,
        json={**payout, "reference": "tr-2", "amount": "8.01"},
    )
    assert r.status_code == 409
    assert r.json()["code"] == "payout_exceeds_balance" and r.json()["payable"] == 800
    for body, field in (
        ({**payout, "reference": "tr-3", "amount": "0"}, "amount"),
        ({**payout, "reference": "tr-3", "amount": "-1"}, "amount"),
        ({**payout, "reference": "tr-3", "amount": "1.001"}, "amount"),
    ):
        r = await client.post("/api/admin/payouts", headers=staff_headers, json=body)
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["errors"]]
    r = await client.post(
        "/api/admin/payouts",
        headers=staff_headers,
        json={**payout, "reference": "tr-4", "seller_id": "sel_nobody"},
    )
    assert r.status_code == 404
    r = await client.get("/api/seller/statements", headers=alpha.headers)
    assert (r.json()[0]["payouts"], r.json()[0]["closing_payable"]) == ("10.00", "8.00")


@pytest.mark.usefixtures("backend")
async def test_a_seller_account_without_a_seller_is_refused(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    headers = await user_headers(app, "seller", "orphan@example.com")
    r = await client.get("/api/seller/statements", headers=headers)
    assert r.status_code == 403 and r.json()["code"] == "no_seller"
