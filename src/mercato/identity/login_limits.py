"""How many failed logins a client may make, and why no stranger can lock an owner out.

Only *failed* attempts spend an allowance. Three buckets, each a token bucket:

* **per client IP** — stops one client spraying guesses over many accounts. Checked first: an
  attempt it refuses charges nothing else and costs no password hashing.
* **per (account, IP)** — what one client may try on one account.
* **per account, from anywhere** — slower; stops many clients (a botnet) sharing out the
  guesses on one account. When it is spent the account is *under attack*, not locked: an
  address that has not failed on the account lately (its (account, IP) bucket is full) may
  still try, and only it. So the owner who knows the password gets in from a clean address,
  while each attacking address gets at most one more guess.

A token is taken from each bucket *before* the password is checked and given back when the
password was right. Taking first is what keeps the limits exact when many attempts arrive at
once: a check that nothing has charged yet would let a burst of concurrent guesses all through.
Giving back on success is what lets customers behind one address (a shared NAT) log in as often
as they like without using up each other's allowance. An attempt refused by a later bucket
gives back what it took from the earlier ones: it made no guess.

Accounts are named in the buckets by a digest of the normalised address, so the limiter (Redis,
in production) holds no e-mail addresses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from mercato.ratelimit import Rate, TokenBucketLimiter, rate_limited
from mercato.settings import Settings

DETAIL = "Too many failed login attempts; try again later"


@dataclass(frozen=True, slots=True)
class LoginRates:
    per_ip: Rate
    per_account_ip: Rate
    per_account: Rate

    @classmethod
    def of(cls, settings: Settings) -> LoginRates:
        return cls(
            per_ip=Rate(settings.login_rate_capacity, settings.login_rate_refill_per_second),
            per_account_ip=Rate(
                settings.login_account_ip_capacity, settings.login_account_ip_refill_per_second
            ),
            per_account=Rate(
                settings.login_account_capacity, settings.login_account_refill_per_second
            ),
        )


@dataclass(frozen=True, slots=True)
class Charge:
    key: str
    rate: Rate
    cost: float


@dataclass(frozen=True, slots=True)
class LoginKeys:
    ip: str
    account_ip: str
    account: str

    @classmethod
    def of(cls, email: str, ip: str) -> LoginKeys:
        account = hashlib.sha256(email.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return cls(
            ip=f"login:ip:{ip}",
            account_ip=f"login:acct-ip:{account}:{ip}",
            account=f"login:acct:{account}",
        )


async def _take(
    limiter: TokenBucketLimiter, key: str, rate: Rate, cost: float = 1
) -> tuple[Charge | None, float]:
    allowed, wait = await limiter.take(key, rate.capacity, rate.refill_per_second, cost)
    return (Charge(key, rate, cost) if allowed else None), wait


async def give_back(limiter: TokenBucketLimiter, charges: list[Charge]) -> None:
    """The attempt did not count (the password was right, or it was refused anyway)."""
    for charge in charges:
        await limiter.refund(
            charge.key, charge.rate.capacity, charge.rate.refill_per_second, charge.cost
        )


async def admit(
    limiter: TokenBucketLimiter, rates: LoginRates, *, email: str, ip: str
) -> list[Charge]:
    """Take what a failed attempt would cost, or raise 429 having charged nothing.

    Returns the charges, to :func:`give_back` when the password turns out to be right.
    """
    keys = LoginKeys.of(email, ip)
    ip_charge, wait = await _take(limiter, keys.ip, rates.per_ip)
    if ip_charge is None:
        raise rate_limited(wait, DETAIL)
    charges = [ip_charge]
    account_charge, account_wait = await _take(limiter, keys.account, rates.per_account)
    if account_charge is not None:
        charges.append(account_charge)
        pair_charge, wait = await _take(limiter, keys.account_ip, rates.per_account_ip)
    else:
        # Under attack: only an address with a full (account, IP) bucket may try, and its try
        # takes the whole bucket, so that it has one guess (concurrent ones are refused) and a
        # failure leaves it refused until the bucket has refilled or the account recovered.
        full = rates.per_account_ip.capacity
        pair_charge, pair_wait = await _take(limiter, keys.account_ip, rates.per_account_ip, full)
        wait = min(account_wait, pair_wait)
    if pair_charge is None:
        await give_back(limiter, charges)
        raise rate_limited(wait, DETAIL)
    charges.append(pair_charge)
    return charges
