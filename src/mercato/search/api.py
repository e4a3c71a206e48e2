"""The storefront's read side: ``GET /api/search``, autocomplete, the product listing
``GET /api/products`` and a product with its availability ``GET /api/products/{id}`` (they
compose the index, the catalog and stock, which only this module sits above), and the staff
synonym list.

Bad input is answered with a 4xx problem (``query_too_long``, ``invalid_price_range``,
``unknown_facet``, ``invalid_cursor``, ``validation_error``) or an empty page, never a 500: the
shopper's text is tokenised here, never parsed as query syntax. An empty query with no filters
is a browse of the whole catalog, best sellers first.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from mercato.catalog import service as catalog
from mercato.catalog.schemas import product_json
from mercato.identity.deps import ApiDestination, BriefApiShopper, OptionalUser, StaffUser
from mercato.money import DECIMAL_PATTERN, CurrencyCode, DecimalStr, MoneyError, to_minor
from mercato.openapi import ASCII_SPACES, SPACE, problems
from mercato.problems import Problem, not_found, validation_problem
from mercato.reviews import service as reviews
from mercato.reviews.schemas import rating_json
from mercato.runtime import RuntimeDep, UowDep
from mercato.search import query as q
from mercato.search import service
from mercato.search.schemas import SynonymList, SynonymsIn, SynonymsOut

router = APIRouter(tags=["search"])
ListingSort = Literal["newest", "price_asc", "price_desc", "best_selling"]
"""The product listing's sorts: the catalog's, and best selling (the index's sales rank)."""

Slug = Annotated[str, Query(max_length=80)]
# The words searched for. Longer is refused by ``_text`` with its own code, ``query_too_long``;
# the document states the same limit.
# A price bound; one that does not read as an amount is refused with ``invalid_price_range``.
Amount = Query(max_length=40, json_schema_extra={"pattern": DECIMAL_PATTERN})
# Comma-separated facet names (or ``none``), blanks ignored: what ``_facets`` accepts.
_FACET = "|".join(q.FACETS)
_S = SPACE
Facets = Query(
    max_length=200,
    json_schema_extra={
        "pattern": rf"^({_S}*(({_FACET}){_S}*)?(,{_S}*(({_FACET}){_S}*)?)*"
        rf"|{_S}*(none{_S}*)?(,{_S}*(none{_S}*)?)*)$"
    },
)
QueryText = Annotated[str, Query(alias="q", json_schema_extra={"maxLength": q.MAX_QUERY_CHARS})]


def _text(value: str, field: str) -> str:
    if len(value) > q.MAX_QUERY_CHARS:
        raise validation_problem(
            field, f"at most {q.MAX_QUERY_CHARS} characters", code="query_too_long"
        )
    return value


def _price_range(
    min_price: str | None, max_price: str | None, currency: str, code: str
) -> tuple[int | None, int | None]:
    """The price bounds in minor units of ``currency``; a bad amount or an upside-down range is
    a 422 of ``code`` naming the parameter."""

    def bound(value: str | None, field: str) -> int | None:
        if value is None:
            return None
        try:
            return to_minor(value, currency)
        except MoneyError as exc:
            raise validation_problem(field, str(exc), code=code) from exc

    low, high = bound(min_price, "min_price"), bound(max_price, "max_price")
    if low is not None and high is not None and low > high:
        raise validation_problem("max_price", "must not be below min_price", code=code)
    return low, high


def _facets(value: str | None) -> frozenset[str]:
    if value is None:
        return frozenset(q.FACETS)
    names = {n.strip(ASCII_SPACES) for n in value.split(",") if n.strip(ASCII_SPACES)}
    if names == {"none"}:
        return frozenset()
    unknown = sorted(names - set(q.FACETS))
    if unknown:
        raise Problem(
            422,
            "unknown_facet",
            f"Unknown facets: {', '.join(unknown)}; known: {', '.join(q.FACETS)}",
            title="Invalid request",
            errors=[{"field": "facets", "message": "unknown facet", "type": "unknown_facet"}],
            known=list(q.FACETS),
        )
    return frozenset(names)


@router.get("/api/search", response_class=JSONResponse, responses=problems(400, 503))
async def search(
    request: Request,
    runtime: RuntimeDep,
    shopper: BriefApiShopper,
    q_: QueryText = "",
    category: Slug | None = None,
    brand: Annotated[list[str] | None, Query(max_length=20)] = None,
    min_price: Annotated[str | None, Amount] = None,
    max_price: Annotated[str | None, Amount] = None,
    currency: Annotated[CurrencyCode | None, Query()] = None,
    rating_gte: Annotated[float | None, Query(ge=0, le=5)] = None,
    in_stock: bool | None = None,
    sort: q.Sort = "relevance",
    cursor: Annotated[str | None, Query(max_length=8000)] = None,
    limit: Annotated[int, Query(ge=1, le=q.MAX_LIMIT)] = 24,
    facets: Annotated[str | None, Facets] = None,
) -> JSONResponse:
    """Products matching the words (typos forgiven, synonyms applied) and filters, with facet
    counts for the whole match. ``attr.<name>=<value>`` filters by attribute or option value;
    ``facets=brand,price`` limits the facets (``facets=none`` for none).

    Availability is for the destination (``country``, else the signed-in customer's default
    address, else the shop's default country): a product is in stock when a warehouse shipping
    there holds units of it, for ``in_stock``, its facet, each hit's ``in_stock`` and the
    ranking.

    For a signed-in customer, the top results of a ``relevance`` search with words are
    re-ordered by the brands and categories they buy (``personalized: true``); the matching
    products, ``total`` and the facets are the same as a guest's, and explicit sorts are never
    re-ordered."""
    text = _text(q_, "q")
    price_currency = currency or runtime.settings.currency
    low, high = _price_range(min_price, max_price, price_currency, "invalid_price_range")
    brands = tuple(dict.fromkeys(b for b in brand or [] if b))
    if any(len(b) > 80 for b in brands):
        raise validation_problem("brand", "at most 80 characters")
    filters = q.Filters(
        category=category,
        brands=brands,
        min_price=low,
        max_price=high,
        currency=price_currency if (currency or low is not None or high is not None) else None,
        rating_gte=rating_gte,
        in_stock=in_stock,
        attributes=catalog.attribute_filters(request.query_params.multi_items()),
    )
    request_ = q.SearchRequest(
        q=text,
        filters=filters,
        sort=sort,
        limit=limit,
        cursor=cursor,
        facets=_facets(facets),
        currency=runtime.settings.currency,
        country=shopper.destination.country,
        user_id=shopper.user.id if shopper.user is not None else None,
    )
    result = await service.search(runtime, request_)
    # The answer is plain JSON data already: skip FastAPI's generic encoder (a millisecond).
    return JSONResponse(
        {
            "query": text,
            "hits": result.hits,
            "total": result.total,
            "facets": result.facets,
            "matched": result.matched,
            "showing_results_for": result.showing_results_for,
            "did_you_mean": result.did_you_mean,
            "next_cursor": result.next_cursor,
            "personalized": result.personalized,
        }
    )


@router.get("/api/search/suggest", response_class=JSONResponse, responses=problems(503))
async def suggest(runtime: RuntimeDep, q_: QueryText = "") -> JSONResponse:
    """Autocomplete: product titles, brands and categories with a word starting with the last
    typed word (and containing the others)."""
    return JSONResponse(await service.suggest(runtime, _text(q_, "q")))


# --------------------------------------------------------------------------------------------
# Products


@router.get("/api/products", responses=problems(400, 503))
async def list_products(
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    destination: ApiDestination,
    category: Annotated[str | None, Query(max_length=80)] = None,
    brand: Annotated[str | None, Query(max_length=80)] = None,
    min_price: Annotated[DecimalStr | None, Query()] = None,
    max_price: Annotated[DecimalStr | None, Query()] = None,
    currency: Annotated[CurrencyCode | None, Query()] = None,
    sort: ListingSort = "newest",
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 24,
) -> dict[str, Any]:
    """Active products, newest first, by price or best selling first (by sales rank), filtered
    by category (with its descendants), brand, price range and attributes
    (``attr.<name>=<value>``), in keyset pages.

    Read from the search index (then hydrated by id); the catalog query answers while no index
    has been built (except ``best_selling``: 503 ``search_unavailable``), and continues pages
    whose cursor it issued. Each variant's stock is for the destination (``country``, else the
    signed-in customer's default address, else the shop's default country)."""
    price_currency = currency or runtime.settings.currency
    low, high = _price_range(min_price, max_price, price_currency, "invalid_price_range")
    query = catalog.ProductQuery(
        category_slug=category,
        brand_slug=brand,
        min_price=low,
        max_price=high,
        currency=price_currency if (currency or low is not None or high is not None) else None,
        attributes=catalog.attribute_filters(request.query_params.multi_items()),
        sort="newest" if sort == "best_selling" else sort,
        limit=limit,
    )
    page = await service.list_products(
        uow,
        runtime,
        query,
        cursor,
        best_selling=sort == "best_selling",
        country=destination.country,
    )
    return {
        "items": [product_json(p, detail=False, stock=page.stock) for p in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get("/api/products/{product_id}")
async def product_detail(
    product_id: str, uow: UowDep, user: OptionalUser, destination: ApiDestination
) -> dict[str, Any]:
    """A product with its variants and its rating (``{average, count, histogram}`` of its
    approved reviews); drafts and archived products are visible to staff only. Stock is for
    delivery to the destination (``?country=``, else the customer's default address, else
    the shop's country): a variant only warehouses shipping elsewhere hold is not
    ``in_stock`` and says ``available_elsewhere``."""
    staff = user is not None and user.role == "staff"
    found = await service.product(
        uow, product_id, include_inactive=staff, country=destination.country
    )
    if found is None:
        raise not_found("Product", product_id)
    view = found.items[0]
    body = product_json(view, detail=True, stock=found.stock)
    body["rating"] = rating_json(found.ratings.get(view.id, reviews.NOT_RATED))
    body["country"] = destination.country
    return body


# --------------------------------------------------------------------------------------------
# Staff


@router.get("/api/admin/search/synonyms", response_model=SynonymList)
async def list_synonyms(uow: UowDep, _: StaffUser) -> SynonymList:
    groups = await service.list_synonyms(uow)
    return SynonymList(
        items=[SynonymsOut(id=g.id, terms=g.terms, created_at=g.created_at) for g in groups]
    )


@router.post(
    "/api/admin/search/synonyms",
    status_code=201,
    response_model=SynonymsOut,
    responses=problems(409),
)
async def add_synonyms(
    body: SynonymsIn, uow: UowDep, runtime: RuntimeDep, _: StaffUser
) -> SynonymsOut:
    """A group of interchangeable terms ("tv", "television"); applied to searches within a few
    seconds, without rebuilding the index."""
    group = await service.add_synonyms(uow, runtime, body.terms)
    return SynonymsOut(id=group.id, terms=group.terms, created_at=group.created_at)


@router.delete("/api/admin/search/synonyms/{synonym_id}", status_code=204)
async def delete_synonyms(
    synonym_id: str, uow: UowDep, runtime: RuntimeDep, _: StaffUser
) -> Response:
    await service.delete_synonyms(uow, runtime, synonym_id)
    return Response(status_code=204)


@router.get("/api/admin/search/status")
async def index_status(runtime: RuntimeDep, _: StaffUser) -> dict[str, Any]:
    """Which index version this process reads, how many products it holds, its last commit."""
    return await service.status(runtime)
