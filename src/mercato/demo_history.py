"""The demo shop's past: customers, ninety days of orders and what became of them, and reviews.

Everything goes through the real services, as the shop's own pages and staff would: a cart
filled with ``cart.add_item``, the checkout workflow with the sandbox card ``tok_visa``, the
ship-and-capture workflow (``fulfilment.create_shipment``, sandbox carrier), deliveries marked
with ``fulfilment.deliver_shipment``, the cancellation workflow, returns requested, approved,
received and refunded by the return-and-refund workflow, and reviews written with
``reviews.create_review`` and decided with ``reviews.moderate``. So the ledger, the payments,
the outbox and every invariant the services keep hold for the past as they do for the present.

**The clock.** Each of those services reads the time from :func:`mercato.db.utcnow`. The
generator runs every action in time order at its simulated moment under
:func:`mercato.db.clock_override` (a context variable set only here): the services write the
past moments they were run at, and nothing else in the process sees another clock.

**The plan** is drawn first from ``random.Random(seed)``, with no database involved: which
customer orders what and when (more orders lately, a few products selling far more than the
rest), and each order's fate (most shipped and delivered a few days later; some
cancelled before shipping; some delivered and then returned and refunded; the last days'
orders still waiting or on their way). Buyers review part of what they received, star ratings
J-shaped (:mod:`mercato.reviews.demo`); written reviews wait for staff, who approve most and
reject a few within a few days, so the latest ones, a few forgotten ones and those the abuse
filter flags are still in the moderation queue. A product that runs out is restocked (a
delivery booked with ``inventory.receive``) when a customer wants it. The same seed and
catalog give the same history: the same orders in the same states and the same reviews (only
the dates move with the day the history was planned).

**Resuming.** The plan's inputs (the seed, the counts, the moment it was planned, the
variants on sale then) and each step's outcome go to a journal file, a JSON line per step,
written as the step completes. A later run reads it, replays the outcomes without touching the
database and carries on with the next step, so a history stopped half way and continued ends
as an uninterrupted one would. Steps stop only between two steps when asked to
(:meth:`History.run`); a process killed outright may repeat the step it was in, which the
checkout's idempotency key makes harmless for an order and which any other step survives as a
skipped one.

**The shop is live meanwhile.** The rest of a default history is made while the shop serves,
so a shopper may buy the units a planned order wanted or cancel a demo customer's order: a
step the services refuse is journalled as skipped (its later steps are never scheduled) and
the run goes on.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from mercato.cart import service as cart
from mercato.catalog import service as catalog
from mercato.checkout import service as checkout
from mercato.db import clock_override, utcnow
from mercato.fulfilment import service as fulfilment
from mercato.identity import service as identity
from mercato.inventory import service as inventory
from mercato.modules import wire
from mercato.orders import service as orders
from mercato.problems import Problem
from mercato.recommendations import service as recommendations
from mercato.returns import service as returns
from mercato.reviews import service as reviews
from mercato.reviews.demo import demo_rating, demo_review
from mercato.runtime import Runtime
from mercato.settings import Settings

log = logging.getLogger("mercato.demo")

STAFF_ACTOR = "staff@example.com"
PAYMENT_TOKEN = "tok_visa"  # noqa: S105 - the sandbox card that is always authorized

CANCELLED_SHARE = 0.05
RETURNED_SHARE = 0.06  # of delivered orders
REVIEW_SHARE = 0.35  # of delivered lines, before the product's popularity is counted in
REJECTED_SHARE = 0.08  # of written reviews that staff decide
LEFT_WAITING_SHARE = 0.05  # of written reviews: still in the moderation queue, whatever their age
# The history's structure: of the products in sets, the chance a buyer of one takes another;
# how many of the catalog's neighbours form sets; how many departments a customer is into, the
# chance a draw is in one, and how steeply a department's own best sellers lead it; the chance a
# draw keeps to the brand the customer first bought in its department; consumables, and the
# chance an order buys one again; the chance an order completes a set the customer started in
# an earlier one (the lens after the camera).
COMPLEMENT_SHARE = 0.6
COMPLEMENT_GROUP_SHARE = 0.8
INTERESTS = 1
INTEREST_SHARE = 0.95
INTEREST_FOCUS = 1.0
BRAND_LOYALTY = 0.8
CONSUMABLE_SHARE = 0.15
REPEAT_SHARE = 0.3
FOLLOW_UP_SHARE = 0.6
RESTOCK_BELOW = 5
RESTOCK_UNITS = 40
JOURNAL_NAME = "demo-history.jsonl"
JOURNAL_VERSION = 2  # 2: departments and brands per category shape the plan

_FIRST = (
    "Anna", "Ben", "Clara", "David", "Elena", "Felix", "Greta", "Hugo", "Ines", "Jonas",
    "Katrin", "Luca", "Marie", "Nils", "Olga", "Paul", "Rosa", "Sven", "Tessa", "Yusuf",
)  # fmt: skip
_LAST = (
    "Bauer", "Costa", "Dubois", "Eriksen", "Fischer", "García", "Horvat", "Jansen", "Kowalski",
    "Larsen", "Martin", "Novak", "Peeters", "Rossi", "Schmidt", "Silva", "Weber", "Zimmermann",
)  # fmt: skip
# (country, city, postal code), weighted towards the larger markets.
_PLACES = (
    ("DE", "Berlin", "10557"), ("DE", "Hamburg", "20095"), ("DE", "München", "80331"),
    ("FR", "Paris", "75002"), ("FR", "Lyon", "69002"), ("NL", "Amsterdam", "1012 AB"),
    ("BE", "Bruxelles", "1000"), ("AT", "Wien", "1010"), ("ES", "Madrid", "28013"),
    ("IT", "Milano", "20121"), ("GB", "London", "EC1A 1BB"), ("SE", "Stockholm", "111 22"),
)  # fmt: skip
_PLACE_WEIGHTS = (6, 3, 3, 5, 2, 3, 2, 2, 3, 3, 3, 1)


@dataclass(frozen=True, slots=True)
class HistoryCounts:
    """What the generator made (the same seed and catalog, the same counts)."""

    customers: int
    orders: int  # placed
    not_placed: int  # refused by the checkout (the stock had run out meanwhile)
    by_status: dict[str, int]
    returns_refunded: int
    reviews: int
    reviews_by_state: dict[str, int]


# -- the plan -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Customer:
    email: str
    name: str
    address: dict[str, str]
    joined_days_ago: float


@dataclass(slots=True)
class _Order:
    customer: int
    placed: datetime
    lines: list[tuple[str, str, int]]  # (variant id, product id, units)
    fate: str  # waiting | in_transit | delivered | cancelled | returned
    ship_after: timedelta
    deliver_after: timedelta
    cancel_after: timedelta
    return_after: timedelta
    refund_after: timedelta
    reviews: list[tuple[str, int, timedelta]] = field(default_factory=list)
    order_id: str | None = None
    shipment_id: str | None = None
    return_id: str | None = None
    review_ids: dict[int, str] = field(default_factory=dict)


def _customers(rng: random.Random, count: int) -> list[_Customer]:
    people = []
    for i in range(count):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        country, city, postal = rng.choices(_PLACES, weights=_PLACE_WEIGHTS)[0]
        address = {
            "name": f"{first} {last}",
            "line1": f"{rng.choice(('Main', 'Station', 'Park', 'Market'))} Street {i % 90 + 1}",
            "city": city,
            "postal_code": postal,
            "country": country,
        }
        people.append(
            _Customer(
                email=f"customer{i + 1:04d}@example.com",
                name=f"{first} {last}",
                address=address,
                joined_days_ago=rng.uniform(95, 700),
            )
        )
    return people


def _order_times(rng: random.Random, count: int, now: datetime, days: int) -> list[datetime]:
    """``count`` moments in the ``days`` before ``now``, more of them lately (the shop is doing
    better). Drawn as ages, so the same seed gives the same history whatever the hour."""
    ages = [days * (1 - rng.random() ** 0.75) for _ in range(count)]
    return sorted(now - timedelta(days=age) for age in ages)


def _complements(rng: random.Random, products: list[str]) -> dict[str, tuple[str, ...]]:
    """Products sold as sets: neighbours in SKU order (the same shelf of the seeded catalog)
    grouped in twos and threes, for about half the catalog; each maps to its set's others."""
    partners: dict[str, tuple[str, ...]] = {}
    at = 0
    while at < len(products) - 1:
        size = rng.choice((2, 2, 3))
        group = products[at : at + size]
        if rng.random() < COMPLEMENT_GROUP_SHARE and len(group) > 1:
            for product in group:
                partners[product] = tuple(p for p in group if p != product)
        at += size
    return partners


def _pick(
    rng: random.Random,
    picked: dict[str, tuple[str, str, int]],
    held: list[tuple[str, frozenset[str]]],
    product: str,
    country: str,
) -> bool:
    """Put one of the product's variants that can reach ``country`` in the order, if any."""
    reaching = [v for v, countries in held if country in countries]
    if not reaching:
        return False
    variant = rng.choice(reaching)
    picked[variant] = (variant, product, rng.choices((1, 2), weights=(85, 15))[0])
    return True


Shelf = tuple[str, str, str]  # a product's brand id (or ""), category id and department id


@dataclass(slots=True)
class _Taste:
    """What one customer is into: a department or two (most of their picks), and in each
    department they bought in, the brand they bought first there (they keep to it)."""

    interests: list[str]
    brands: dict[str, str] = field(default_factory=dict)


def _draw(shape: random.Random, pool: list[str], weight_of: dict[str, float]) -> str:
    return shape.choices(pool, weights=[weight_of[p] for p in pool])[0]


def _give_structure(
    shape: random.Random,
    plans: list[_Order],
    products: list[str],
    weights: list[float],
    variants: Variants,
    people: list[_Customer],
    shelves: dict[str, Shelf],
) -> None:
    """What recommendations learn from, laid over the planned orders in time order: each
    customer's department (most of their picks, the department's own best sellers first) and,
    in each department, the brand they bought first there; sets of products bought together
    (and completed in a later order); consumables bought again. ``products`` is in popularity
    order, ``weights`` its weights."""
    partners = _complements(shape, list(variants))  # variants: in SKU order, shelf by shelf
    consumables = {p for p in products if shape.random() < CONSUMABLE_SHARE}
    weight_of = dict(zip(products, weights, strict=True))
    by_department: dict[str, list[str]] = {}
    by_shelf: dict[tuple[str, str], list[str]] = {}  # (brand, department) -> its products
    for product in products:
        if product in shelves:
            brand, _category, department = shelves[product]
            by_department.setdefault(department, []).append(product)
            by_shelf.setdefault((brand, department), []).append(product)
    departments = sorted(by_department)
    # Within a department its own best sellers lead (``products`` is in popularity order).
    focused = {
        p: 1 / (rank + 1) ** INTEREST_FOCUS
        for shelf in by_department.values()
        for rank, p in enumerate(shelf)
    }
    tastes: dict[int, _Taste] = {}
    stocked: dict[int, list[str]] = {}  # the consumables each customer bought, in order
    owned: dict[int, list[str]] = {}  # the products of a set each customer bought, in order
    for order in plans:
        who = order.customer
        country = people[who].address["country"]
        if who not in tastes:
            tastes[who] = _Taste(shape.sample(departments, min(INTERESTS, len(departments))))
        taste = tastes[who]
        lines: dict[str, tuple[str, str, int]] = {}
        for variant, product, units in order.lines:
            chosen = product
            if taste.interests and shape.random() < INTEREST_SHARE:
                chosen = _draw(shape, by_department[shape.choice(taste.interests)], focused)
            if chosen in shelves:
                brand, _category, department = shelves[chosen]
                kept = taste.brands.setdefault(department, brand)
                if kept != brand and shape.random() < BRAND_LOYALTY:
                    chosen = _draw(shape, by_shelf[kept, department], weight_of)
            if chosen != product and _pick(shape, lines, variants[chosen], chosen, country):
                # Its planned review was of the product it replaced: none is written.
                order.reviews = [r for r in order.reviews if r[0] != product]
                continue
            lines[variant] = (variant, product, units)
        for _variant, product, _units in list(lines.values()):
            if product in partners and shape.random() < COMPLEMENT_SHARE:
                partner = shape.choice(partners[product])
                _pick(shape, lines, variants[partner], partner, country)
        if owned.get(who) and shape.random() < FOLLOW_UP_SHARE:
            follow = shape.choice(partners[shape.choice(owned[who])])
            _pick(shape, lines, variants[follow], follow, country)
        if stocked.get(who) and shape.random() < REPEAT_SHARE:
            again = shape.choice(stocked[who])
            _pick(shape, lines, variants[again], again, country)
        order.lines = list(lines.values())
        for _variant, product, _units in order.lines:
            if product in consumables and product not in stocked.setdefault(who, []):
                stocked[who].append(product)
            if product in partners and product not in owned.setdefault(who, []):
                owned[who].append(product)


def _plan(
    rng: random.Random,
    *,
    customers: int,
    count: int,
    variants: dict[str, list[tuple[str, frozenset[str]]]],
    people: list[_Customer],
    now: datetime,
    days: int,
    shelves: dict[str, Shelf] | None = None,
) -> list[_Order]:
    products = list(variants)  # in SKU order: the seeded catalog's, unlike the ids
    rng.shuffle(products)
    # Zipf-like popularity over a random order of the products: a few best sellers, a long tail.
    weights = [1 / (rank + 1) ** 0.9 for rank in range(len(products))]
    cumulative = list(itertools.accumulate(weights))
    # Some customers come back often, most order once or twice.
    loyalty = [rng.paretovariate(1.3) for _ in range(customers)]
    loyal_cumulative = list(itertools.accumulate(loyalty))
    rank_of = {product: rank for rank, product in enumerate(products)}
    reviewed: set[tuple[int, str]] = set()  # one review per customer and product
    plans = []
    for placed in _order_times(rng, count, now, days):
        who = rng.choices(range(customers), cum_weights=loyal_cumulative)[0]
        country = people[who].address["country"]
        picked: dict[str, tuple[str, str, int]] = {}
        for _ in range(rng.choices((1, 2, 3), weights=(60, 28, 12))[0]):
            for _draw in range(10):  # a product some warehouse ships to the customer's country
                product = rng.choices(products, cum_weights=cumulative)[0]
                reaching = [v for v, countries in variants[product] if country in countries]
                if reaching:
                    variant = rng.choice(reaching)
                    picked[variant] = (variant, product, rng.choices((1, 2), weights=(85, 15))[0])
                    break
        if not picked:
            continue
        age = now - placed
        ship_after = timedelta(hours=rng.uniform(4, 40))
        deliver_after = ship_after + timedelta(days=rng.uniform(1, 4))
        return_after = deliver_after + timedelta(days=rng.uniform(2, 12))
        if rng.random() < CANCELLED_SHARE:
            fate = "cancelled"
        elif age < ship_after:
            fate = "waiting"
        elif age < deliver_after:
            fate = "in_transit"
        elif rng.random() < RETURNED_SHARE and age > return_after:
            fate = "returned"
        else:
            fate = "delivered"
        order = _Order(
            customer=who,
            placed=placed,
            lines=list(picked.values()),
            fate=fate,
            ship_after=ship_after,
            deliver_after=deliver_after,
            cancel_after=timedelta(minutes=rng.uniform(5, 300)),
            return_after=return_after,
            refund_after=return_after + timedelta(days=rng.uniform(3, 8)),
        )
        if fate == "delivered":
            for _variant, product, _units in order.lines:
                rank = rank_of[product]
                # Best sellers get a few more reviews per sale (visibility, engaged buyers).
                share = REVIEW_SHARE * (1.4 if rank < 20 else 1.0)
                if rng.random() < share and (who, product) not in reviewed:
                    reviewed.add((who, product))
                    after = deliver_after + timedelta(days=rng.uniform(1, 25) ** 1.2)
                    if after < age:
                        order.reviews.append((product, demo_rating(rng), after))
        plans.append(order)
    # The structure is laid over the plan with a generator of its own, seeded from this one's
    # final state: the times, customers and fates drawn above stay what they always were.
    shape = random.Random(repr(rng.getstate()))
    _give_structure(shape, plans, products, weights, variants, people, shelves or {})
    return plans


# -- the journal ----------------------------------------------------------------------------------

Variants = dict[str, list[tuple[str, frozenset[str]]]]


def journal_path(settings: Settings) -> Path:
    """Where the demo history of the settings' database keeps its journal (the data directory
    is one per database)."""
    return Path(settings.data_dir) / JOURNAL_NAME


class _Journal:
    """The plan's inputs on the first line, then one step's outcome per line, appended as each
    step completes (flushed to the operating system, which keeps it if the process dies)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def read(self) -> tuple[dict[str, Any] | None, list[Any]]:
        if self.path is None or not self.path.exists():
            return None, []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0]) if lines else None
        if header is None or header.get("version") != JOURNAL_VERSION:
            return None, []
        outcomes = []
        for line in lines[1:]:
            try:
                outcomes.append(json.loads(line))
            except ValueError:
                break  # the last line, cut off when the process died while writing it
        return header, outcomes

    def begin(self, header: dict[str, Any]) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_name(self.path.name + ".part")
        part.write_text(json.dumps(header) + "\n", encoding="utf-8")
        part.replace(self.path)

    def record(self, outcome: Any) -> None:
        if self.path is None:
            return
        if self.file is None:
            self.file = self.path.open("a", encoding="utf-8")
        self.file.write(json.dumps(outcome) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _header(
    *, seed: int, customers: int, orders: int, days: int, planned: datetime, variants: Variants
) -> dict[str, Any]:
    return {
        "version": JOURNAL_VERSION,
        "seed": seed,
        "customers": customers,
        "orders": orders,
        "days": days,
        "planned": planned.isoformat(),
        "variants": [
            [product, [[variant, sorted(countries)] for variant, countries in held]]
            for product, held in variants.items()
        ],
    }


def _variants_of(header: dict[str, Any]) -> Variants:
    return {
        product: [(variant, frozenset(countries)) for variant, countries in held]
        for product, held in header["variants"]
    }


# -- running it -----------------------------------------------------------------------------------


class _Clock:
    """The simulated time: each reading moves it on by a millisecond, so the moments read
    within one action stay in order."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        self.at += timedelta(milliseconds=1)
        return self.at


async def _sellable_variants(runtime: Runtime) -> Variants:
    """Active variants with stock, by product id, in SKU order (the seeded catalog's order),
    each with the countries its warehouses ship to."""
    by_product: Variants = {}
    after: str | None = None
    async with runtime.db.transaction() as uow:
        serves = {w.code: w.countries for w in await inventory.list_warehouses(uow) if w.active}
        while True:
            page = await catalog.variants_by_sku(uow, after_sku=after, limit=500)
            if not page:
                break
            after = page[-1].sku
            levels = await inventory.stock_for_variants(uow, [v.id for v in page])
            for v in page:
                held = [s for s in levels[v.id] if s.available > 0 and s.warehouse_code in serves]
                if v.active and held:
                    countries = frozenset(c for s in held for c in serves[s.warehouse_code])
                    by_product.setdefault(v.product_id, []).append((v.id, countries))
    return by_product


async def _shelves(runtime: Runtime, product_ids: list[str]) -> dict[str, Shelf]:
    """Each product's brand, category and department (its category's parent, else the
    category itself); the catalog's do not change under a history."""
    async with runtime.db.transaction() as uow:
        views = await catalog.get_products(uow, product_ids)
    return {
        p: (v.brand.id if v.brand else "", v.category.id, v.category.parent_id or v.category.id)
        for p, v in views.items()
    }


Agenda = list[tuple[datetime, int, str, int, int]]
"""(moment, tie-breaker, action, order index, extra), a heap."""


class History:
    """A planned history and how far it got: :meth:`prepare` plans it (or reads the plan back
    from the journal and replays what was done), :meth:`run` makes the rest, in one go or in
    parts."""

    def __init__(
        self,
        runtime: Runtime,
        journal: _Journal,
        header: dict[str, Any],
        people: list[_Customer],
        plans: list[_Order],
    ) -> None:
        self.runtime = runtime
        self.journal = journal
        self.seed: int = header["seed"]
        self.planned = datetime.fromisoformat(header["planned"])
        self.clock = _Clock(self.planned)
        self.people = people
        self.plans = plans
        self.users: list[identity.UserInfo] = []
        self.total_orders = len(plans)
        self.orders_done = 0  # orders tried (placed or refused)
        self.placed = self.not_placed = self.refunded = self.written = 0
        self.bodies: set[str | None] = set()  # texts written so far: buyers do not copy each other
        self.agenda: Agenda = []
        self.counter = itertools.count()
        self.step = 0
        self.outcomes: list[Any] = []
        settings = runtime.settings
        self.limits = cart.CartLimits.from_settings(settings)
        self.policy = reviews.AbusePolicy.from_settings(settings)
        self.cache = cart.cache_for(runtime)
        for index, plan in enumerate(plans):
            self._later(plan.placed, "place", index)

    @property
    def finished(self) -> bool:
        return not self.agenda

    @classmethod
    async def prepare(
        cls,
        runtime: Runtime,
        *,
        customers: int,
        orders_count: int,
        seed: int,
        password: str,
        days: int = 90,
        journal: Path | None = None,
    ) -> History:
        """The history planned from ``seed`` (or, when ``journal`` holds one, the history
        planned then, whatever the arguments say), its customers made, and the steps the
        journal records replayed."""
        wire()  # the hooks between modules: what a verified purchase is, among others
        book = _Journal(journal)
        header, outcomes = book.read()
        if header is None:
            variants = await _sellable_variants(runtime)
            if customers < 1 or orders_count < 1:
                variants = {}
            header = _header(
                seed=seed,
                customers=customers,
                orders=orders_count,
                days=days,
                planned=utcnow(),
                variants=variants,
            )
            book.begin(header)
            outcomes = []
        variants = _variants_of(header)
        rng = random.Random(header["seed"])
        people = _customers(rng, header["customers"]) if variants else []
        shelves = await _shelves(runtime, list(variants))
        plans = (
            _plan(
                rng,
                customers=header["customers"],
                count=header["orders"],
                variants=variants,
                people=people,
                now=datetime.fromisoformat(header["planned"]),
                days=header["days"],
                shelves=shelves,
            )
            if variants
            else []
        )
        history = cls(runtime, book, header, people, plans)
        await history._make_customers(password)
        history._replay(outcomes)
        return history

    async def _make_customers(self, password: str) -> None:
        """The accounts in one transaction, each at the moment it was opened (or, when a run
        made them already, read back)."""
        if not self.people:
            return
        async with self.runtime.db.transaction() as uow:
            if await identity.get_user_by_email(uow, self.people[0].email) is not None:
                for person in self.people:
                    user = await identity.get_user_by_email(uow, person.email)
                    assert user is not None
                    self.users.append(user)
                return
        password_hash = await identity.hash_password(password)
        with clock_override(self.clock):
            async with self.runtime.db.transaction() as uow:
                for person in self.people:
                    self.clock.at = self.planned - timedelta(days=person.joined_days_ago)
                    user = await identity.create_user(
                        uow,
                        email=person.email,
                        password=password,
                        role="customer",
                        name=person.name,
                        password_hash=password_hash,
                    )
                    self.users.append(user)

    def _replay(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        while self.agenda and self.step < len(outcomes):
            at, _, action, index, extra = heapq.heappop(self.agenda)
            self._follow(at, action, index, extra, outcomes[self.step])
            self.step += 1

    async def run(
        self,
        *,
        until_orders: int | None = None,
        stop: asyncio.Event | None = None,
        advance: Callable[[int], None] = lambda n: None,
    ) -> HistoryCounts | None:
        """Make the next steps in time order, until the history is complete (its counts), or
        until ``until_orders`` orders have been tried or ``stop`` is set (None; a later
        :meth:`run`, or a :meth:`prepare` from the same journal, continues).
        ``advance(n)``: n more orders tried."""
        try:
            with clock_override(self.clock):
                while self.agenda:
                    at, _, action, index, extra = self.agenda[0]
                    if stop is not None and stop.is_set():
                        return None
                    enough = until_orders is not None and self.orders_done >= until_orders
                    if action == "place" and enough:
                        return None
                    heapq.heappop(self.agenda)
                    self.clock.at = at
                    outcome = await self._act(action, index, extra)
                    self.journal.record(outcome)
                    self._follow(at, action, index, extra, outcome)
                    self.step += 1
                    if action == "place":
                        advance(1)
        finally:
            if not self.agenda:
                self.journal.close()
        return await self.counts()

    async def counts(self) -> HistoryCounts:
        async with self.runtime.db.transaction() as uow:
            by_status = await orders.count_by_status(uow)
            by_state = await reviews.count_by_state(uow)
        return HistoryCounts(
            customers=len(self.users),
            orders=self.placed,
            not_placed=self.not_placed,
            by_status=by_status,
            returns_refunded=self.refunded,
            reviews=self.written,
            reviews_by_state=by_state,
        )

    async def publish_figures(self) -> None:
        """Recompute the sales rank and rebuild the recommendations now rather than at the
        worker's next turn, so the best sellers reach the search index and the product pages
        show what was bought together as soon as the orders are there."""
        settings = self.runtime.settings
        async with self.runtime.db.transaction() as uow:
            await orders.refresh_sales_ranks(
                uow,
                now=utcnow(),
                window_days=settings.sales_rank_window_days,
                half_life_days=settings.sales_rank_half_life_days,
            )
        await recommendations.build(self.runtime)

    def close(self) -> None:
        self.journal.close()

    # -- one step: done (with the services) and followed (its next steps scheduled) ------------

    def _later(self, at: datetime, action: str, index: int, extra: int = 0) -> None:
        if at < self.planned:
            heapq.heappush(self.agenda, (at, next(self.counter), action, index, extra))

    def _review_draft(self, index: int, extra: int) -> tuple[random.Random, Any]:
        plan = self.plans[index]
        _product, rating, _after = plan.reviews[extra]
        review_rng = random.Random(f"{self.seed}:{index}:{extra}")
        return review_rng, demo_review(review_rng, rating, taken=self.bodies)

    async def _act(self, action: str, index: int, extra: int) -> Any:
        """Run one step with the services; its outcome as the journal keeps it (None or False:
        the shop refused it, the step and those that would have followed are skipped)."""
        plan = self.plans[index]
        user = self.users[plan.customer]
        runtime = self.runtime
        if action == "place":
            return await _place(
                runtime,
                user,
                self.people[plan.customer],
                plan,
                self.limits,
                self.cache,
                f"demo-{self.seed}-{index}",
            )
        try:
            if action == "cancel":
                assert plan.order_id is not None
                await orders.cancel_order(
                    runtime, plan.order_id, actor=user.id, user_id=user.id, reason="Changed my mind"
                )
                return True
            if action == "ship":
                assert plan.order_id is not None
                shipment = await fulfilment.create_shipment(
                    runtime,
                    plan.order_id,
                    fulfilment.ShipmentRequest(carrier="sandbox"),
                    actor=STAFF_ACTOR,
                )
                return shipment.id
            if action == "deliver":
                assert plan.shipment_id is not None
                async with runtime.db.transaction() as uow:
                    await fulfilment.deliver_shipment(uow, plan.shipment_id, actor="carrier")
                return True
            if action == "return":
                return await _return(runtime, user, plan)
            if action == "refund":
                assert plan.return_id is not None
                await _refund(runtime, plan)
                return True
            if action == "review":
                product = plan.reviews[extra][0]
                _rng, draft = self._review_draft(index, extra)
                async with runtime.db.transaction() as uow:
                    review = await reviews.create_review(
                        uow, user, product, draft, ip=None, policy=self.policy
                    )
                return [review.id, review.state, review.flagged]
            assert action == "moderate"
            rejected = random.Random(f"{self.seed}:{index}:{extra}:decision").random()
            async with runtime.db.transaction() as uow:
                await reviews.moderate(
                    uow,
                    plan.review_ids[extra],
                    "reject" if rejected < REJECTED_SHARE else "approve",
                    actor=STAFF_ACTOR,
                    reason="Off-topic: about the delivery, not the product"
                    if rejected < REJECTED_SHARE
                    else None,
                )
            return True
        except Problem as problem:
            # The shop is live: someone may have got there first (see the module docstring).
            log.info("demo history: %s of order %d skipped (%s)", action, index, problem.code)
            return None if action in ("ship", "return", "review") else False

    def _follow(self, at: datetime, action: str, index: int, extra: int, outcome: Any) -> None:
        """Count a step's outcome and schedule what follows from it; the same for a step just
        made and for one read back from the journal."""
        plan = self.plans[index]
        if action == "place":
            self.orders_done += 1
            if outcome is None:
                self.not_placed += 1
                return
            self.placed += 1
            plan.order_id = outcome
            if plan.fate == "cancelled":
                self._later(at + plan.cancel_after, "cancel", index)
            elif plan.fate != "waiting":
                self._later(plan.placed + plan.ship_after, "ship", index)
        elif action == "ship" and outcome is not None:
            plan.shipment_id = outcome
            if plan.fate != "in_transit":
                self._later(plan.placed + plan.deliver_after, "deliver", index)
        elif action == "deliver" and outcome:
            if plan.fate == "returned":
                self._later(plan.placed + plan.return_after, "return", index)
            for i, (_product, _rating, after) in enumerate(plan.reviews):
                self._later(plan.placed + after, "review", index, i)
        elif action == "return" and outcome is not None:
            plan.return_id = outcome
            self._later(plan.placed + plan.refund_after, "refund", index)
        elif action == "refund" and outcome:
            self.refunded += 1
        elif action == "review":
            review_rng, draft = self._review_draft(index, extra)
            self.bodies.add(draft.body)
            if outcome is None:
                return
            self.written += 1
            review_id, state, flagged = outcome
            # Staff get to most written reviews within a few days; some wait longer.
            if state == "pending" and not flagged:
                if review_rng.random() >= LEFT_WAITING_SHARE:
                    hours = review_rng.uniform(6, 96)
                    self._later(at + timedelta(hours=hours), "moderate", index, extra)
                plan.review_ids[extra] = review_id


async def generate_history(
    runtime: Runtime,
    *,
    customers: int,
    orders_count: int,
    seed: int,
    password: str,
    days: int = 90,
    advance: Callable[[int], None] = lambda n: None,
    journal: Path | None = None,
) -> HistoryCounts:
    """Make ``customers`` customers (signing in with ``password``) and ``orders_count`` orders
    over the last ``days`` days, with their shipments, deliveries, cancellations, returns,
    refunds and reviews (see the module docstring), all in one go; then the sales rank.
    ``advance(n)``: n more orders handled."""
    history = await History.prepare(
        runtime,
        customers=customers,
        orders_count=orders_count,
        seed=seed,
        password=password,
        days=days,
        journal=journal,
    )
    counts = await history.run(advance=advance)
    assert counts is not None
    await history.publish_figures()
    return counts


async def _place(
    runtime: Runtime,
    user: identity.UserInfo,
    person: _Customer,
    plan: _Order,
    limits: cart.CartLimits,
    cache: cart.CartCache | None,
    key: str,
) -> str | None:
    """Fill the customer's cart and check out; the order id. When a variant has run out, the
    warehouse receives a delivery of it (as staff would book it) and the customer tries again;
    None if the checkout still refuses."""
    owner = cart.CartOwner(user_id=user.id)
    for attempt in range(2):
        try:
            async with runtime.db.transaction() as uow:
                # Emptied first: a step repeated after the process died starts from scratch.
                await cart.empty_cart(uow, owner, limits=limits, cache=cache)
                for variant, _product, units in plan.lines:
                    await cart.add_item(uow, owner, variant, units, limits=limits, cache=cache)
            body = await checkout.checkout(
                runtime,
                user,
                f"{key}-{attempt}",
                checkout.CheckoutRequest(
                    shipping_address=person.address,
                    shipping_method="standard",
                    payment_token=PAYMENT_TOKEN,
                ),
            )
        except Problem as problem:
            async with runtime.db.transaction() as uow:
                await cart.empty_cart(uow, owner, limits=limits, cache=cache)
            if problem.code not in ("out_of_stock", "variant_unavailable"):
                log.info("demo history: an order refused (%s)", problem.code)
                return None
            if attempt == 0:
                await _restock(runtime, [v for v, _p, _u in plan.lines], person.address["country"])
            continue
        order_id: str = body["order_id"]
        return order_id
    return None


async def _restock(runtime: Runtime, variants: list[str], country: str) -> None:
    """A delivery of :data:`RESTOCK_UNITS` of each variant (nearly) sold out for ``country``,
    to the warehouse shipping there that holds most of it."""
    async with runtime.db.transaction() as uow:
        serves = {w.code for w in await inventory.list_warehouses(uow) if w.ships_to(country)}
        levels = await inventory.stock_for_variants(uow, variants)
        for variant in variants:
            rows = sorted(
                (s for s in levels[variant] if s.warehouse_code in serves),
                key=lambda s: (-s.on_hand, s.warehouse_code),
            )
            if rows and sum(s.available for s in rows) < RESTOCK_BELOW:
                await inventory.receive(
                    uow, variant, rows[0].warehouse_code, RESTOCK_UNITS, reference="demo restock"
                )


async def _return(runtime: Runtime, user: identity.UserInfo, plan: _Order) -> str:
    """The customer sends the whole order back; staff agree."""
    assert plan.order_id is not None
    async with runtime.db.transaction() as uow:
        order = await orders.get_order(uow, plan.order_id)
        assert order is not None
        found = await returns.request_return(
            uow,
            plan.order_id,
            user_id=user.id,
            lines=[(line.id, line.quantity) for line in order.lines],
            reason="Not what I expected",
            window_days=runtime.settings.return_window_days,
        )
    async with runtime.db.transaction() as uow:
        await returns.approve_return(uow, found.id, actor=STAFF_ACTOR)
    return found.id


async def _refund(runtime: Runtime, plan: _Order) -> None:
    """Staff receive the parcel back and put everything back on the shelf; the workflow refunds."""
    assert plan.return_id is not None and plan.order_id is not None
    async with runtime.db.transaction() as uow:
        order = await orders.get_order(uow, plan.order_id)
    assert order is not None
    await returns.receive_return(
        runtime,
        plan.return_id,
        [returns.Disposition(line.id, "restock") for line in order.lines],
        actor=STAFF_ACTOR,
    )
