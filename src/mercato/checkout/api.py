"""The checkout API: shipping methods, quotes, the checkout itself, and the staff setup."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from mercato.cart import service as cart_service
from mercato.checkout import saga, service
from mercato.checkout.schemas import (
    AdminShippingMethodOut,
    CheckoutIn,
    CheckoutOut,
    PromoIn,
    PromoOut,
    QuoteIn,
    QuoteOut,
    SagaOut,
    SettingsIn,
    SettingsOut,
    ShippingMethodIn,
    ShippingMethodsOut,
    TaxRateIn,
    TaxRateOut,
    ZoneIn,
    ZoneOut,
    percent_to_bps,
)
from mercato.identity import service as identity
from mercato.identity.deps import OptionalUser, PresentedCredential, StaffUser, unauthorized
from mercato.identity.service import UserInfo
from mercato.money import MoneyError, format_minor, to_minor
from mercato.problems import not_found, validation_problem
from mercato.runtime import RuntimeDep, SessionDep

router = APIRouter()
public = APIRouter(prefix="/api/checkout", tags=["checkout"])
admin = APIRouter(prefix="/api/admin/checkout", tags=["checkout admin"])


async def _customer(runtime: RuntimeDep, credential: PresentedCredential) -> UserInfo:
    """The signed-in caller, checked in a short transaction of its own: the checkout runs its
    steps in their own transactions and must not sit inside a request-long one (on SQLite that
    would hold the write lock the steps wait for)."""
    if credential is None:
        raise unauthorized("missing", None)
    async with runtime.db.session() as session:
        check = await identity.check_token(session, credential.token)
    if check.user is None:
        raise unauthorized(check.status, credential, secure_cookie=runtime.settings.cookie_secure)
    return check.user


# --------------------------------------------------------------------------------------------
# Shoppers


@public.get("/shipping-methods", response_model=ShippingMethodsOut)
async def shipping_methods(
    session: SessionDep,
    country: Annotated[str, Query(pattern=r"^[A-Za-z]{2}$", examples=["DE"])],
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
) -> dict[str, Any]:
    """The shipping methods for a destination country, with their prices."""
    code = country.upper()
    found = await service.shipping_methods_for(session, code, currency=currency)
    return {"country": code, "methods": [service.method_to_json(m) for m in found]}


async def _quote_cart(
    request: Request, session: SessionDep, runtime: RuntimeDep, user: UserInfo | None
) -> cart_service.CartInfo | None:
    if user is not None:
        return await cart_service.get_cart_for(session, user.id, None)
    token = request.headers.get(cart_service.CART_HEADER) or request.cookies.get(
        cart_service.CART_COOKIE
    )
    if not token:
        return None
    cart_id = cart_service.read_cart_token(runtime.settings.secret_key, token)
    return await cart_service.get_cart_for(session, None, cart_id)


@public.post("/quote", response_model=QuoteOut)
async def quote(
    body: QuoteIn,
    request: Request,
    session: SessionDep,
    runtime: RuntimeDep,
    user: OptionalUser,
) -> dict[str, Any]:
    """Price the caller's cart (customer or guest) for a destination, shipping method and promo
    code, at current prices. No side effects: nothing is reserved or used up."""
    cart = await _quote_cart(request, session, runtime, user)
    found = await service.quote_cart(
        session,
        cart,
        country=body.shipping_address.country,
        region=body.shipping_address.region,
        shipping_method=body.shipping_method,
        promo_code=body.promo_code,
    )
    return {
        **service.priced_to_json(found.priced, found.items),
        "price_changes": list(found.price_changes),
    }


@public.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={201: {"model": CheckoutOut}},
    response_model=None,
)
async def checkout(
    body: CheckoutIn,
    runtime: RuntimeDep,
    credential: PresentedCredential,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Place the order for the signed-in customer's cart: stock is reserved, the payment
    authorized and the order created (status ``paid``). Send a unique ``Idempotency-Key`` per
    attempt: the same key and body return the same order; another body is a 422
    ``idempotency_conflict``."""
    if credential is None:
        raise unauthorized("missing", None)
    presented = credential

    async def authenticate(session: AsyncSession) -> UserInfo:
        # In the checkout's first transaction rather than one of its own.
        check = await identity.check_token(session, presented.token)
        if check.user is None:
            secure = runtime.settings.cookie_secure
            raise unauthorized(check.status, presented, secure_cookie=secure)
        return check.user

    request = saga.CheckoutRequest(
        shipping_address=body.shipping_address.model_dump(),
        shipping_method=body.shipping_method,
        payment_token=body.payment_token,
        promo_code=body.promo_code,
    )
    answer = await saga.checkout_as(runtime, authenticate, idempotency_key, request)
    return JSONResponse(answer, status_code=status.HTTP_201_CREATED)


@public.get("/{checkout_id}", response_model=SagaOut)
async def get_checkout(
    checkout_id: str, runtime: RuntimeDep, credential: PresentedCredential
) -> saga.SagaInfo:
    """Where one of the caller's checkouts stands (for a client that lost the answer)."""
    user = await _customer(runtime, credential)
    async with runtime.db.connect() as conn:
        found = await saga.saga_for_user(conn, checkout_id, user.id)
    if found is None:
        raise not_found("Checkout", checkout_id)
    return found


# --------------------------------------------------------------------------------------------
# Staff


def _amount(value: str, currency: str, field: str) -> int:
    try:
        return to_minor(value, currency)
    except MoneyError as exc:
        raise validation_problem(field, str(exc)) from exc


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise validation_problem(field, "needs a time zone, e.g. 2026-01-01T00:00:00Z")
    return value


def _method_out(m: service.ShippingMethodInfo) -> dict[str, Any]:
    return {
        **service.method_to_json(m),
        "id": m.id,
        "zone_id": m.zone_id,
        "position": m.position,
        "active": m.active,
    }


def _promo_out(p: service.PromoInfo) -> dict[str, Any]:
    if p.kind == "percent":
        value = service.percent_text(p.value)
    else:
        value = format_minor(p.value, p.currency or "XXX")
    return {
        "id": p.id,
        "code": p.code,
        "kind": p.kind,
        "value": value,
        "currency": p.currency,
        "min_subtotal": format_minor(p.min_subtotal, p.currency or "XXX"),
        "starts_at": p.starts_at,
        "ends_at": p.ends_at,
        "usage_limit": p.usage_limit,
        "per_customer_limit": p.per_customer_limit,
        "used_count": p.used_count,
        "active": p.active,
    }


def _rate_out(r: service.TaxRateInfo) -> dict[str, Any]:
    return {
        "id": r.id,
        "country": r.country,
        "region": r.region,
        "tax_class": r.tax_class,
        "rate": service.percent_text(r.rate_bps),
    }


@admin.get("/zones", response_model=list[ZoneOut])
async def list_zones(_staff: StaffUser, session: SessionDep) -> list[service.ZoneInfo]:
    return await service.list_zones(session)


@admin.post("/zones", response_model=ZoneOut, status_code=status.HTTP_201_CREATED)
async def create_zone(body: ZoneIn, _staff: StaffUser, session: SessionDep) -> service.ZoneInfo:
    conn = await session.connection()
    return await service.create_zone(conn, name=body.name, countries=body.countries)


@admin.get("/shipping-methods", response_model=list[AdminShippingMethodOut])
async def list_methods(_staff: StaffUser, session: SessionDep) -> list[dict[str, Any]]:
    return [_method_out(m) for m in await service.list_shipping_methods(session)]


@admin.post(
    "/shipping-methods",
    response_model=AdminShippingMethodOut,
    status_code=status.HTTP_201_CREATED,
)
async def create_method(
    body: ShippingMethodIn, _staff: StaffUser, session: SessionDep
) -> dict[str, Any]:
    c = body.currency
    bands = [
        {
            "up_to_grams": b.up_to_grams,
            "amount": _amount(b.price, c, f"weight_bands[{i}].price"),
        }
        for i, b in enumerate(body.weight_bands)
    ]
    conn = await session.connection()
    created = await service.create_shipping_method(
        conn,
        zone_id=body.zone_id,
        code=body.code,
        name=body.name,
        kind=body.kind,
        amount=_amount(body.price, c, "price"),
        currency=c,
        free_over=None if body.free_over is None else _amount(body.free_over, c, "free_over"),
        weight_bands=bands,
        min_days=body.min_days,
        max_days=body.max_days,
        position=body.position,
    )
    return _method_out(created)


@admin.get("/tax-rates", response_model=list[TaxRateOut])
async def list_rates(
    _staff: StaffUser,
    session: SessionDep,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
) -> list[dict[str, Any]]:
    rates = await service.list_tax_rates(session, country.upper() if country else None)
    return [_rate_out(r) for r in rates]


@admin.put("/tax-rates", response_model=TaxRateOut)
async def put_rate(body: TaxRateIn, _staff: StaffUser, session: SessionDep) -> dict[str, Any]:
    """Create or replace the rate for (country, region, tax class)."""
    conn = await session.connection()
    rate = await service.set_tax_rate(
        conn,
        country=body.country,
        region=body.region,
        tax_class=body.tax_class,
        rate_bps=percent_to_bps(body.rate),
    )
    return _rate_out(rate)


@admin.get("/promo-codes", response_model=list[PromoOut])
async def list_promos(_staff: StaffUser, session: SessionDep) -> list[dict[str, Any]]:
    return [_promo_out(p) for p in await service.list_promo_codes(session)]


@admin.post("/promo-codes", response_model=PromoOut, status_code=status.HTTP_201_CREATED)
async def create_promo(body: PromoIn, _staff: StaffUser, session: SessionDep) -> dict[str, Any]:
    if body.kind == "percent":
        try:
            value = percent_to_bps(body.value)
        except ValueError as exc:
            raise validation_problem("value", str(exc)) from exc
        if value == 0:
            raise validation_problem("value", "must be more than 0")
    else:
        if body.currency is None:
            raise validation_problem("currency", "a fixed-amount code needs a currency")
        value = _amount(body.value, body.currency, "value")
    min_currency = body.currency or "XXX"
    conn = await session.connection()
    promo = await service.create_promo_code(
        conn,
        code=body.code,
        kind=body.kind,
        value=value,
        currency=body.currency,
        min_subtotal=_amount(body.min_subtotal, min_currency, "min_subtotal"),
        starts_at=_aware(body.starts_at, "starts_at"),
        ends_at=_aware(body.ends_at, "ends_at"),
        usage_limit=body.usage_limit,
        per_customer_limit=body.per_customer_limit,
        active=body.active,
    )
    return _promo_out(promo)


@admin.get("/settings", response_model=SettingsOut)
async def get_settings(_staff: StaffUser, session: SessionDep) -> dict[str, bool]:
    return {"prices_include_tax": await service.prices_include_tax(session)}


@admin.put("/settings", response_model=SettingsOut)
async def put_settings(body: SettingsIn, _staff: StaffUser, session: SessionDep) -> dict[str, bool]:
    conn = await session.connection()
    value = await service.set_prices_include_tax(conn, body.prices_include_tax)
    return {"prices_include_tax": value}


router.include_router(public)
router.include_router(admin)
