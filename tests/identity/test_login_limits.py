"""Failed-login limits over HTTP, the API and the login page alike: only failures count, a
refused attempt charges nothing, no stranger can lock an owner out, customers behind one
address do not block each other, and the limits hold exactly under concurrent attempts.

The identity tests' allowances (tests/identity/support.py): 5 failures per client IP, 3 per
account from one IP, 8 per account from anywhere, none refilling while a test runs.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
from fastapi import FastAPI

from tests.identity.support import (
    ACCOUNT_CAPACITY,
    ACCOUNT_IP_CAPACITY,
    LOGIN_CAPACITY,
    PASSWORD,
    assert_problem,
    counts,
    make_user,
    page_post,
)

WRONG = "not the password"
OWNER = "ada@example.com"
Clients = Callable[[str], httpx.AsyncClient]


async def login(c: httpx.AsyncClient, email: str = OWNER, password: str = WRONG) -> int:
    r = await c.post("/api/auth/login", json={"email": email, "password": password})
    assert r.status_code in (200, 401, 429), r.text
    if r.status_code == 429:
        assert_problem(r, 429, "rate_limited")
        assert int(r.headers["retry-after"]) >= 1
    return r.status_code


async def test_a_throttled_address_charges_no_account(client_from: Clients, app: FastAPI) -> None:
    await make_user(app, OWNER)
    attacker = client_from("127.0.0.7")
    # The attacker spends its address's allowance on other accounts...
    sprayed = [await login(attacker, f"victim{i}@example.com") for i in range(LOGIN_CAPACITY)]
    assert sprayed == [401] * LOGIN_CAPACITY

    # ...then hammers the owner's account: every attempt is refused before the password is
    # looked at, the right password too, and none of them costs the account anything.
    before = await counts(app)
    assert {await login(attacker) for _ in range(30)} == {429}
    assert await login(attacker, password=PASSWORD) == 429
    assert await counts(app) == before

    # Another address still has its whole allowance on the account, and the owner gets in.
    other = client_from("127.0.0.8")
    assert [await login(other) for _ in range(ACCOUNT_IP_CAPACITY)] == [401] * ACCOUNT_IP_CAPACITY
    assert await login(other) == 429  # that address has used its share on this account
    assert await login(client_from("127.0.0.9"), password=PASSWORD) == 200


async def test_wrong_passwords_from_many_addresses_never_lock_the_owner_out(
    client_from: Clients, app: FastAPI
) -> None:
    await make_user(app, OWNER)
    attackers = [client_from(f"10.0.0.{i}") for i in range(1, 11)]
    # Ten addresses, one wrong password each: the account's own allowance (8) is spent, so it
    # is under attack. An address that has not failed on it yet still gets its one guess.
    assert [await login(a) for a in attackers] == [401] * 10
    # Every address that failed is refused now, whatever password it sends...
    for a in attackers:
        assert await login(a, password=PASSWORD) == 429
    # ...a fresh one gets exactly one guess...
    fresh = client_from("10.0.1.1")
    assert [await login(fresh), await login(fresh)] == [401, 429]
    # ...and the owner, proving the password from a clean address, logs in, as often as needed.
    owner = client_from("192.0.2.10")
    assert [await login(owner, password=PASSWORD) for _ in range(3)] == [200] * 3
    # The account's other limits still count the owner's own mistakes from that address.
    assert await login(owner) == 401
    assert await login(owner, password=PASSWORD) == 429


async def test_successful_logins_spend_nothing(client_from: Clients, app: FastAPI) -> None:
    """Customers behind one address (a shared NAT) log in as often as they like."""
    customers = [f"customer{i}@example.com" for i in range(4)]
    for email in customers:
        await make_user(app, email)
    office = client_from("198.51.100.1")
    answers = [await login(office, email, PASSWORD) for _ in range(3) for email in customers]
    assert answers == [200] * 12  # more than twice the address's allowance of failures
    # The address's allowance of failures is untouched: all of it is still there.
    assert [await login(office, f"x{i}@example.com") for i in range(LOGIN_CAPACITY)] == [
        401
    ] * LOGIN_CAPACITY
    assert await login(office, customers[0], PASSWORD) == 429  # now it is spent


async def test_a_burst_from_one_address_gets_exactly_its_allowance(
    client_from: Clients, app: FastAPI
) -> None:
    """Forty wrong passwords at once: the password is checked exactly as often as the
    (account, IP) allowance says, however the attempts interleave."""
    await make_user(app, OWNER)
    burst = client_from("203.0.113.5")
    answers = Counter(await asyncio.gather(*[login(burst) for _ in range(40)]))
    assert answers == {401: ACCOUNT_IP_CAPACITY, 429: 40 - ACCOUNT_IP_CAPACITY}
    assert await login(client_from("203.0.113.6"), password=PASSWORD) == 200


async def test_concurrent_attackers_owner_and_customers(client_from: Clients, app: FastAPI) -> None:
    """Eight addresses guessing at once (six tries each) while the owner and customers behind
    another address log in: every limit holds, and no one with the password is refused."""
    await make_user(app, OWNER)
    customers = [f"shopper{i}@example.com" for i in range(3)]
    for email in customers:
        await make_user(app, email)
    attackers = {f"10.9.0.{i}": client_from(f"10.9.0.{i}") for i in range(1, 9)}
    office = client_from("198.51.100.7")

    async def attack(ip: str) -> tuple[str, int]:
        return ip, await login(attackers[ip])

    async def with_password() -> list[int]:
        return list(
            await asyncio.gather(
                login(client_from("192.0.2.44"), password=PASSWORD),
                *[login(office, email, PASSWORD) for email in customers],
            )
        )

    attacks, rightful = await asyncio.gather(
        asyncio.gather(*[attack(ip) for ip in attackers for _ in range(6)]), with_password()
    )
    assert rightful == [200] * 4  # the owner and the customers: never refused
    failures = Counter(ip for ip, status in attacks if status == 401)
    # Per address: at most its share of the account. Overall: the account's own allowance,
    # plus at most the one guess each address gets once the account is under attack.
    assert max(failures.values()) <= ACCOUNT_IP_CAPACITY
    assert sum(failures.values()) <= ACCOUNT_CAPACITY + len(attackers)
    assert {status for _, status in attacks} <= {401, 429}
    # Afterwards the owner still logs in from a clean address.
    assert await login(client_from("192.0.2.45"), password=PASSWORD) == 200


async def test_the_login_page_keeps_the_same_limits(client_from: Clients, app: FastAPI) -> None:
    await make_user(app, OWNER)
    attacker = client_from("127.0.0.20")
    for i in range(LOGIN_CAPACITY):
        assert await login(attacker, f"victim{i}@example.com") == 401
    # The page refuses the throttled address too, with the same Retry-After...
    form = {"email": OWNER, "password": PASSWORD, "next": "/"}
    r = await page_post(attacker, "/account/login", "/account/login", form)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "Too many attempts" in r.text
    # ...and failures on the page count as they do on the API.
    page_user = client_from("127.0.0.21")
    wrong = {**form, "password": WRONG}
    for _ in range(ACCOUNT_IP_CAPACITY):
        r = await page_post(page_user, "/account/login", "/account/login", wrong)
        assert r.status_code == 422
        assert "incorrect" in r.text
    assert await login(page_user, password=PASSWORD) == 429
    # The owner logs in on the page from a clean address.
    owner = client_from("127.0.0.22")
    r = await page_post(owner, "/account/login", "/account/login", form)
    assert r.status_code == 303, r.text
    assert "mercato_session" in r.cookies
