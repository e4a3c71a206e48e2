"""Search and category listings: the shopper's query string read leniently (a hand-edited URL
never breaks the page, an unusable value is simply ignored), turned into the search service's
request, and the answer turned into facet links and removable chips.

Every facet is a plain link to the same page with one parameter toggled, so filtering works
without JavaScript; the page may swap only its results region with htmx."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from mercato.catalog import service as catalog
from mercato.catalog.service import ATTR_PREFIX
from mercato.money import MoneyError, format_minor, to_minor
from mercato.search import service as search
from mercato.web.templating import money

PAGE_SIZE = 24
MAX_BRANDS = 20
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
BRANDS_SHOWN = 8
ATTRIBUTES_SHOWN = 6
VALUES_SHOWN = 8
SORT_LABELS: dict[str, str] = {
    "relevance": "Best match",
    "best_selling": "Best selling",
    "price_asc": "Price: low to high",
    "price_desc": "Price: high to low",
    "newest": "Newest",
    "rating": "Customer rating",
}
BROWSE_SORT_LABEL = "Best selling"
# What the listing keeps in its links; anything else in the URL is dropped.
KEPT = ("q", "category", "brand", "min_price", "max_price", "rating_gte", "in_stock", "sort")


@dataclass
class Listing:
    """The shopper's choices, as read from the query string; prices are in ``currency``, the
    shop's; availability is for ``country``, where the shopper's goods would go."""

    currency: str = field(kw_only=True)
    country: str | None = field(default=None, kw_only=True)
    q: str = ""
    category: str | None = None
    brands: tuple[str, ...] = ()
    min_price: int | None = None
    max_price: int | None = None
    rating_gte: int | None = None
    in_stock: bool | None = None
    attributes: dict[str, list[str]] = field(default_factory=dict)
    sort: str = "relevance"
    cursor: str | None = None

    @property
    def filtered(self) -> bool:
        return bool(
            self.category
            or self.brands
            or self.min_price is not None
            or self.max_price is not None
            or self.rating_gte is not None
            or self.in_stock is not None
            or self.attributes
        )

    def filters(self, category: str | None = None) -> search.Filters:
        priced = self.min_price is not None or self.max_price is not None
        return search.Filters(
            category=category or self.category,
            brands=self.brands,
            min_price=self.min_price,
            max_price=self.max_price,
            currency=self.currency if priced else None,
            rating_gte=float(self.rating_gte) if self.rating_gte is not None else None,
            in_stock=self.in_stock,
            attributes={k: list(v) for k, v in self.attributes.items()},
        )

    def request(
        self, *, category: str | None = None, limit: int = PAGE_SIZE, user_id: str | None = None
    ) -> search.SearchRequest:
        """The search; ``user_id`` (a signed-in customer) re-orders the top of a search with
        words by their affinities."""
        return search.SearchRequest(
            q=self.q,
            filters=self.filters(category),
            sort=self.sort,
            limit=limit,
            cursor=self.cursor,
            snippets=False,
            currency=self.currency,
            country=self.country,
            user_id=user_id,
        )

    def pairs(self, *, with_category: bool = True) -> list[tuple[str, str]]:
        """The choices as query parameters (no cursor: any change starts at page one)."""
        out: list[tuple[str, str]] = []
        if self.q:
            out.append(("q", self.q))
        if self.category and with_category:
            out.append(("category", self.category))
        out += [("brand", b) for b in self.brands]
        if self.min_price is not None:
            out.append(("min_price", format_minor(self.min_price, self.currency)))
        if self.max_price is not None:
            out.append(("max_price", format_minor(self.max_price, self.currency)))
        if self.rating_gte is not None:
            out.append(("rating_gte", str(self.rating_gte)))
        if self.in_stock is not None:
            out.append(("in_stock", "true" if self.in_stock else "false"))
        for name, values in self.attributes.items():
            out += [(ATTR_PREFIX + name, v) for v in values]
        if self.sort != "relevance":
            out.append(("sort", self.sort))
        return out


def _price(value: str | None, currency: str) -> int | None:
    if not value:
        return None
    try:
        minor = to_minor(value.strip(), currency)
    except MoneyError:
        return None
    return minor if minor >= 0 else None


def parse_listing(params: QueryParams, currency: str, country: str | None = None) -> Listing:
    """Read the listing's choices, prices in ``currency`` (the shop's), availability for
    ``country`` (the shopper's destination); values that cannot be used are left out, never
    an error."""
    text = (params.get("q") or "").strip()[: search.MAX_QUERY_CHARS]
    category = params.get("category")
    brands = tuple(dict.fromkeys(b for b in params.getlist("brand") if b and SLUG.fullmatch(b)))[
        :MAX_BRANDS
    ]
    low, high = _price(params.get("min_price"), currency), _price(params.get("max_price"), currency)
    if low is not None and high is not None and low > high:
        low, high = high, low
    rating: int | None = None
    raw_rating = params.get("rating_gte")
    if raw_rating and raw_rating.isdigit() and 1 <= int(raw_rating) <= 5:
        rating = int(raw_rating)
    stock = {"true": True, "1": True, "false": False, "0": False}.get(
        (params.get("in_stock") or "").lower()
    )
    attributes = catalog.attribute_filters(params.multi_items(), lenient=True)
    sort = params.get("sort") or "relevance"
    cursor = params.get("cursor")
    return Listing(
        currency=currency,
        country=country,
        q=text,
        category=category if category and SLUG.fullmatch(category) else None,
        brands=brands,
        min_price=low,
        max_price=high,
        rating_gte=rating,
        in_stock=stock,
        attributes=attributes,
        sort=sort if sort in SORT_LABELS else "relevance",
        cursor=cursor if cursor and len(cursor) <= 8000 else None,
    )


# --------------------------------------------------------------------------------------------
# Links


def href(base: str, pairs: Iterable[tuple[str, str]]) -> str:
    query = urlencode(list(pairs))
    return f"{base}?{query}" if query else base


def _without(
    pairs: Sequence[tuple[str, str]], drop: Iterable[tuple[str, str | None]]
) -> list[tuple[str, str]]:
    gone = list(drop)

    def dropped(pair: tuple[str, str]) -> bool:
        return any(pair[0] == k and (v is None or pair[1] == v) for k, v in gone)

    return [p for p in pairs if not dropped(p)]


def toggled(base: str, pairs: Sequence[tuple[str, str]], key: str, value: str) -> str:
    if (key, value) in pairs:
        return href(base, _without(pairs, [(key, value)]))
    return href(base, [*pairs, (key, value)])


def replaced(base: str, pairs: Sequence[tuple[str, str]], updates: dict[str, str | None]) -> str:
    kept = _without(pairs, [(k, None) for k in updates])
    return href(base, kept + [(k, v) for k, v in updates.items() if v is not None])


# --------------------------------------------------------------------------------------------
# Facets and chips


@dataclass(frozen=True, slots=True)
class FacetLink:
    label: str
    count: int | None
    href: str
    selected: bool = False


@dataclass
class FacetGroup:
    key: str
    title: str
    links: list[FacetLink]
    more: list[FacetLink] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Chip:
    label: str
    href: str


def _minus_one(amount: str, currency: str) -> int | None:
    minor = _price(amount, currency)
    return None if minor is None else max(minor - 1, 0)


def price_label(low: int | None, high: int | None, currency: str) -> str:
    if low is not None and high is not None:
        return f"{money(low, currency)} – {money(high, currency)}"
    if low is not None:
        return f"{money(low, currency)} and up"
    if high is not None:
        return f"Up to {money(high, currency)}"
    return ""


def _split(links: list[FacetLink], shown: int) -> tuple[list[FacetLink], list[FacetLink]]:
    chosen = [link for link in links if link.selected]
    others = [link for link in links if not link.selected]
    head = chosen + others[: max(shown - len(chosen), 0)]
    return head, others[max(shown - len(chosen), 0) :]


def facet_groups(
    listing: Listing,
    facets: dict[str, Any] | None,
    base: str,
    *,
    category_links: list[FacetLink] | None = None,
) -> list[FacetGroup]:
    """The sidebar: each facet's values with counts, as links toggling that filter."""
    if not facets:
        return []
    pairs = listing.pairs()
    groups: list[FacetGroup] = []
    if category_links:
        groups.append(FacetGroup("category", "Category", category_links))
    brands = [
        FacetLink(
            b["label"],
            int(b["count"]),
            toggled(base, pairs, "brand", b["value"]),
            b["value"] in listing.brands,
        )
        for b in facets.get("brand") or []
    ]
    if brands:
        head, more = _split(brands, BRANDS_SHOWN)
        groups.append(FacetGroup("brand", "Brand", head, more))
    prices = []
    currency = listing.currency
    for bucket in facets.get("price") or []:
        low = _price(bucket["from"], currency)
        high = _minus_one(bucket["to"], currency) if bucket.get("to") else None
        selected = listing.min_price == low and listing.max_price == high
        target = {
            "min_price": None if selected else bucket["from"],
            "max_price": None if selected or high is None else format_minor(high, currency),
        }
        prices.append(
            FacetLink(
                price_label(low, high, currency),
                int(bucket["count"]),
                replaced(base, pairs, target),
                selected,
            )
        )
    if prices:
        groups.append(FacetGroup("price", "Price", prices))
    ratings = [
        FacetLink(
            f"{r['gte']}★ & up",
            int(r["count"]),
            replaced(
                base,
                pairs,
                {"rating_gte": None if listing.rating_gte == r["gte"] else str(r["gte"])},
            ),
            listing.rating_gte == r["gte"],
        )
        for r in facets.get("rating") or []
        if r["count"]
    ]
    if ratings:
        groups.append(FacetGroup("rating", "Customer rating", ratings))
    stock = facets.get("in_stock")
    if stock is not None:
        on = listing.in_stock is True
        groups.append(
            FacetGroup(
                "in_stock",
                "Availability",
                [
                    FacetLink(
                        "In stock only",
                        int(stock.get("in_stock", 0)),
                        replaced(base, pairs, {"in_stock": None if on else "true"}),
                        on,
                    )
                ],
            )
        )
    attributes: dict[str, list[dict[str, Any]]] = facets.get("attributes") or {}
    for name, values in list(attributes.items())[:ATTRIBUTES_SHOWN]:
        chosen = listing.attributes.get(name, [])
        links = [
            FacetLink(
                str(v["value"]),
                int(v["count"]),
                toggled(base, pairs, ATTR_PREFIX + name, str(v["value"])),
                str(v["value"]) in chosen,
            )
            for v in values
        ]
        head, more = _split(links, VALUES_SHOWN)
        groups.append(FacetGroup(ATTR_PREFIX + name, attribute_title(name), head, more))
    return groups


def attribute_title(name: str) -> str:
    words = name.replace("_", " ").strip()
    for suffix, unit in ((" l", " (L)"), (" mm", " (mm)"), (" cm", " (cm)"), (" g", " (g)")):
        if words.endswith(suffix):
            words = words[: -len(suffix)] + unit
    return words[:1].upper() + words[1:]


def chips(
    listing: Listing,
    facets: dict[str, Any] | None,
    base: str,
    *,
    category_label: str | None = None,
) -> list[Chip]:
    """The filters in force, each a link that removes it."""
    pairs = listing.pairs()
    labels = {b["value"]: b["label"] for b in (facets or {}).get("brand") or []}
    found: list[Chip] = []
    if listing.category and category_label is not None:
        found.append(Chip(f"Category: {category_label}", replaced(base, pairs, {"category": None})))
    for brand in listing.brands:
        found.append(
            Chip(f"Brand: {labels.get(brand, brand)}", toggled(base, pairs, "brand", brand))
        )
    if listing.min_price is not None or listing.max_price is not None:
        found.append(
            Chip(
                f"Price: {price_label(listing.min_price, listing.max_price, listing.currency)}",
                replaced(base, pairs, {"min_price": None, "max_price": None}),
            )
        )
    if listing.rating_gte is not None:
        found.append(
            Chip(f"Rating: {listing.rating_gte}★ & up", replaced(base, pairs, {"rating_gte": None}))
        )
    if listing.in_stock is not None:
        label = "In stock only" if listing.in_stock else "Out of stock only"
        found.append(Chip(label, replaced(base, pairs, {"in_stock": None})))
    for name, values in listing.attributes.items():
        for value in values:
            found.append(
                Chip(
                    f"{attribute_title(name)}: {value}",
                    toggled(base, pairs, ATTR_PREFIX + name, value),
                )
            )
    return found


def hidden_inputs(listing: Listing, *, skip: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The choices as hidden form fields (for the sort form), minus ``skip``."""
    skipped = set(skip)
    return [(k, v) for k, v in listing.pairs() if k not in skipped]
