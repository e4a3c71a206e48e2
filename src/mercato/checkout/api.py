"""The checkout API: shipping methods, quotes, the checkout itself, and the staff setup."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse

from mercato.cart import service as cart_service
from mercato.cart.schemas import presented_token
from mercato.checkout import service
from mercato.checkout.schemas import (
    AdminShippingMethodOut,
    CheckoutIn,
    CheckoutOut,
    CheckoutStatusOut,
    FlashCheckoutIn,
    FlashPurchaseOut,
    FlashPurchaseQueuedOut,
    ProductDeliveryOut,
    PromoIn,
    PromoOut,
    QuoteIn,
    QuoteOut,
    SettingsIn,
    SettingsOut,
    ShippingMethodIn,
    ShippingMethodsOut,
    TaxRateIn,
    TaxRateOut,
    ZoneIn,
    ZoneOut,
)
from mercato.db import UnitOfWork
from mercato.identity import service as identity
from mercato.identity.deps import (
    ApiDestination,
    CurrentUser,
    OptionalUser,
    PresentedCredential,
    StaffUser,
    WorkflowUser,
    unauthorized,
)
from mercato.identity.service import UserInfo
from mercato.money import format_minor
from mercato.openapi import guest_allowed, problems, raises
from mercato.problems import not_found
from mercato.ratelimit import client_ip
from mercato.runtime import Runtime, RuntimeDep, UowDep

router = APIRouter()
public = APIRouter(prefix="/api/checkout", tags=["checkout"])
admin = APIRouter(prefix="/api/admin/checkout", tags=["checkout admin"])
# Delivery dates need the inventory and the shipping methods, which the catalog (below both)
# cannot read: the product's delivery answer lives here.
products = APIRouter(prefix="/api/products", tags=["checkout"])
# A flash sale's units are sold by this module's queue-fed checkout (flashsale sits below it).
flash = APIRouter(prefix="/api/flash-sales", tags=["flash sales"])


# --------------------------------------------------------------------------------------------
# Shoppers

IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "A unique key per order attempt: the same key and body return the same "
    "order. Missing: 400 `idempotency_key_required`; malformed: 400 `invalid_idempotency_key`.",
    "schema": {
        "type": "string",
        "minLength": 1,
        "maxLength": service.MAX_IDEMPOTENCY_KEY_LENGTH,
        "pattern": service.IDEMPOTENCY_KEY_PATTERN,
    },
}


@public.get("/shipping-methods", response_model=ShippingMethodsOut)
async def shipping_methods(
    uow: UowDep,
    country: Annotated[str, Query(pattern=r"^[A-Za-z]{2}$", examples=["DE"])],
    currency: Annotated[str | None, Query(pattern=r"^[A-Z]{3}$")] = None,
) -> dict[str, Any]:
    """The shipping methods for a destination country, with their prices."""
    code = country.upper()
    found = await service.shipping_methods_for(uow, code, currency=currency)
    return {"country": code, "methods": [service.method_to_json(m) for m in found]}


def _guest_cart_id(request: Request, runtime: RuntimeDep) -> str | None:
    """The cart a guest's token names (header or cookie); None without a token, 400
    ``invalid_cart_token`` for a forged one."""
    token, _ = presented_token(request)
    return _cart_id_of(token, runtime)


def _cart_id_of(token: str | None, runtime: Runtime) -> str | None:
    return cart_service.read_cart_token(runtime.settings.secret_key, token) if token else None


@guest_allowed
@raises(400)  # invalid_cart_token
async def guest_cart_token(request: Request) -> str | None:
    """The cart token a guest checks out with (``X-Cart-Token``, else the cart cookie); read
    only when nobody signs in, so signing in stays optional for the checkout."""
    token, _ = presented_token(request)
    return token


async def _quote_cart(
    request: Request, uow: UnitOfWork, runtime: RuntimeDep, user: UserInfo | None
) -> cart_service.CartInfo | None:
    if user is not None:
        return await cart_service.get_cart_for(uow, user.id, None)
    cart_id = _guest_cart_id(request, runtime)
    if cart_id is None:
        return None
    return await cart_service.get_cart_for(uow, None, cart_id)


@public.post("/quote", response_model=QuoteOut, responses=problems(400, 409, 429))
async def quote(
    body: QuoteIn,
    request: Request,
    uow: UowDep,
    runtime: RuntimeDep,
    user: OptionalUser,
) -> dict[str, Any]:
    """Price the caller's cart (customer or guest) for a destination, shipping method and promo
    code, at current prices, with what every other shipping method would cost it. No side
    effects: nothing is reserved or used up. A guest's quotes count against its address's
    allowance of writes, and promo codes that do not exist against the cart's and the
    address's allowance of guesses (429 ``rate_limited`` with ``Retry-After``)."""
    ip = client_ip(request)
    owner = cart_service.CartOwner(user_id=user.id if user is not None else None)
    await cart_service.throttle_guest(cart_service.GuestThrottle.for_caller(runtime, ip), owner)
    cart = await _quote_cart(request, uow, runtime, user)
    found = await service.quote_cart(
        uow,
        cart,
        country=body.shipping_address.country,
        region=body.shipping_address.region,
        shipping_method=body.shipping_method,
        promo_code=body.promo_code,
        promo_guard=service.PromoGuard.for_caller(runtime, ip),
        delivery=service.delivery_clock(runtime.settings),
    )
    options = service.shipping_options(found.methods, found)
    return {
        **service.priced_to_json(found.priced, found.items),
        "price_changes": list(found.price_changes),
        "shipping_options": [service.option_to_json(o) for o in options],
        "country": found.country,
        "not_deliverable": [
            {"line_id": i.line_id, "variant_id": i.variant_id, "sku": i.sku, "title": i.title}
            for i in found.not_deliverable
        ],
    }


@products.get("/{product_id}/delivery", response_model=ProductDeliveryOut)
async def product_delivery(
    product_id: str,
    uow: UowDep,
    runtime: RuntimeDep,
    destination: ApiDestination,
    variant: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=40,
            description="The variant to estimate; by default the first that can reach the country",
        ),
    ] = None,
) -> dict[str, Any]:
    """When the product would arrive if ordered now, with each shipping method to the
    destination: from the warehouse that would serve it (its handling time), the method's
    transit days, business days in the shop's time zone and its order cut-off."""
    found = await service.product_delivery(
        uow,
        product_id,
        destination.country,
        service.delivery_clock(runtime.settings),
        variant_id=variant,
    )
    arrives = found.arrives
    return {
        "product_id": found.product_id,
        "variant_id": found.variant_id,
        "country": found.country,
        "arrives": None if arrives is None else arrives.to_json(),
        "shipping_options": [
            {
                "code": o.method.code,
                "name": o.method.name,
                "delivery_days": {"min": o.method.min_days, "max": o.method.max_days},
                "arrives": o.arrives.to_json(),
            }
            for o in found.options
        ],
    }


@public.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={201: {"model": CheckoutOut}, **problems(400, 401, 402, 409, 422, 429)},
    response_model=None,
    openapi_extra={"parameters": [IDEMPOTENCY_KEY]},
)
async def checkout(
    body: CheckoutIn,
    request: Request,
    runtime: RuntimeDep,
    credential: PresentedCredential,
    guest_token: Annotated[str | None, Depends(guest_cart_token)],
    # Checked by the checkout after the credential (a bad token is refused first), so it is
    # described to the document by hand: required, with the rule the checkout applies.
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", include_in_schema=False)
    ] = None,
) -> JSONResponse:
    """Place the order for the signed-in customer's cart, or for a guest's cart (its token in
    ``X-Cart-Token`` or the cart cookie, with ``email``): stock is reserved, the payment
    authorized and the order created (status ``paid``). Send a unique ``Idempotency-Key`` per
    attempt: the same key and body return the same order; another body is a 422
    ``idempotency_conflict``. Without a credential and without ``email``: 401; a guest's
    checkout counts against its address's allowance of writes."""
    wanted = service.CheckoutRequest(
        shipping_address=body.shipping_address.model_dump(),
        shipping_method=body.shipping_method,
        payment_token=body.payment_token,
        promo_code=body.promo_code,
    )
    if credential is None:
        if body.email is None:
            raise unauthorized("missing", None)
        guest = replace(wanted, email=body.email)
        return await _guest_checkout(request, runtime, guest_token, idempotency_key, guest)
    presented = credential

    async def authenticate(uow: UnitOfWork) -> UserInfo:
        # In the checkout's first transaction rather than one of its own.
        check = await identity.check_token(uow, presented.token)
        if check.user is None:
            secure = runtime.settings.cookie_secure
            raise unauthorized(check.status, presented, secure_cookie=secure)
        return check.user

    answer = await service.checkout_as(
        runtime, authenticate, idempotency_key, wanted, ip=client_ip(request)
    )
    return JSONResponse(answer, status_code=status.HTTP_201_CREATED)


async def _guest_checkout(
    request: Request,
    runtime: RuntimeDep,
    token: str | None,
    idempotency_key: str | None,
    wanted: service.CheckoutRequest,
) -> JSONResponse:
    ip = client_ip(request)
    guard = cart_service.GuestThrottle.for_caller(runtime, ip)
    await cart_service.throttle_guest(guard, cart_service.CartOwner())
    cart_id = _cart_id_of(token, runtime)
    answer = await service.checkout_guest(runtime, cart_id, idempotency_key, wanted, ip=ip)
    return JSONResponse(answer, status_code=status.HTTP_201_CREATED)


@public.get("/{checkout_id}", response_model=CheckoutStatusOut)
async def get_checkout(checkout_id: str, uow: UowDep, user: CurrentUser) -> service.CheckoutStatus:
    """Where one of the caller's checkouts stands (for a client that lost the answer)."""
    found = await service.checkout_status(uow, checkout_id, user.id)
    if found is None:
        raise not_found("Checkout", checkout_id)
    return found


# --------------------------------------------------------------------------------------------
# Staff


def _method_out(m: service.ShippingMethodInfo) -> dict[str, Any]:
    return {
        **service.method_to_json(m),
        "id": m.id,
        "zone_id": m.zone_id,
        "position": m.position,
        "active": m.active,
    }


def _promo_out(p: service.PromoInfo, shop_currency: str) -> dict[str, Any]:
    # A code without a currency (a percentage) has its minimum order in the shop's.
    currency = p.currency or shop_currency
    if p.kind == "percent":
        value = service.percent_text(p.value)
    else:
        value = format_minor(p.value, currency)
    return {
        "id": p.id,
        "code": p.code,
        "kind": p.kind,
        "value": value,
        "currency": p.currency,
        "min_subtotal": format_minor(p.min_subtotal, currency),
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
async def list_zones(_staff: StaffUser, uow: UowDep) -> list[service.ZoneInfo]:
    return await service.list_zones(uow)


@admin.post(
    "/zones", response_model=ZoneOut, status_code=status.HTTP_201_CREATED, responses=problems(409)
)
async def create_zone(body: ZoneIn, _staff: StaffUser, uow: UowDep) -> service.ZoneInfo:
    return await service.create_zone(uow, name=body.name, countries=body.countries)


@admin.get("/shipping-methods", response_model=list[AdminShippingMethodOut])
async def list_methods(_staff: StaffUser, uow: UowDep) -> list[dict[str, Any]]:
    return [_method_out(m) for m in await service.list_shipping_methods(uow)]


@admin.post(
    "/shipping-methods",
    response_model=AdminShippingMethodOut,
    status_code=status.HTTP_201_CREATED,
    responses=problems(409),
)
async def create_method(body: ShippingMethodIn, _staff: StaffUser, uow: UowDep) -> dict[str, Any]:
    return _method_out(await service.add_shipping_method(uow, body))


@admin.get("/tax-rates", response_model=list[TaxRateOut])
async def list_rates(
    _staff: StaffUser,
    uow: UowDep,
    country: Annotated[str | None, Query(pattern=r"^[A-Za-z]{2}$")] = None,
) -> list[dict[str, Any]]:
    rates = await service.list_tax_rates(uow, country.upper() if country else None)
    return [_rate_out(r) for r in rates]


@admin.put("/tax-rates", response_model=TaxRateOut)
async def put_rate(body: TaxRateIn, _staff: StaffUser, uow: UowDep) -> dict[str, Any]:
    """Create or replace the rate for (country, region, tax class)."""
    return _rate_out(await service.save_tax_rate(uow, body))


@admin.get("/promo-codes", response_model=list[PromoOut])
async def list_promos(_staff: StaffUser, uow: UowDep, runtime: RuntimeDep) -> list[dict[str, Any]]:
    currency = runtime.settings.currency
    return [_promo_out(p, currency) for p in await service.list_promo_codes(uow)]


@admin.post(
    "/promo-codes",
    response_model=PromoOut,
    status_code=status.HTTP_201_CREATED,
    responses=problems(409),
)
async def create_promo(
    body: PromoIn, _staff: StaffUser, uow: UowDep, runtime: RuntimeDep
) -> dict[str, Any]:
    currency = runtime.settings.currency
    return _promo_out(await service.create_promo(uow, body, currency), currency)


@admin.get("/settings", response_model=SettingsOut)
async def get_settings(_staff: StaffUser, uow: UowDep) -> dict[str, bool]:
    return {"prices_include_tax": await service.prices_include_tax(uow)}


@admin.put("/settings", response_model=SettingsOut)
async def put_settings(body: SettingsIn, _staff: StaffUser, uow: UowDep) -> dict[str, bool]:
    value = await service.set_prices_include_tax(uow, body.prices_include_tax)
    return {"prices_include_tax": value}


# --------------------------------------------------------------------------------------------
# The flash-sale checkout


@flash.post(
    "/{sale_id}/checkout",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=FlashPurchaseQueuedOut,
    responses=problems(400, 403, 409, 422, 429),
    openapi_extra={"parameters": [IDEMPOTENCY_KEY]},
)
async def flash_checkout(
    sale_id: str,
    body: FlashCheckoutIn,
    request: Request,
    runtime: RuntimeDep,
    user: WorkflowUser,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", include_in_schema=False)
    ] = None,
) -> dict[str, Any]:
    """Buy the units an admission holds: the token is checked at once (403
    ``invalid_admission`` or ``admission_expired``, 409 ``not_admitted`` or ``sale_ended``),
    then the purchase is queued and placed by a worker with others (its payment authorized,
    its order created). 202 with the purchase to poll. The same ``Idempotency-Key`` and body
    answer the same purchase; another body under that key is a 409 ``idempotency_conflict``.
    429 ``rate_limited`` like the waiting room."""
    wanted = service.PurchaseRequest(
        admission_token=body.admission_token,
        shipping_address=body.shipping_address.model_dump(),
        payment_token=body.payment_token,
        shipping_method=body.shipping_method,
        variant_id=body.variant_id,
    )
    queued = await service.enqueue_purchase(
        runtime, user, sale_id, idempotency_key, wanted, ip=client_ip(request)
    )
    return queued.answer()


@flash.get("/{sale_id}/purchases/{purchase_id}", response_model=FlashPurchaseOut)
async def flash_purchase(
    sale_id: str, purchase_id: str, runtime: RuntimeDep, user: WorkflowUser
) -> service.PurchaseStatus:
    """Where the caller's purchase stands: ``queued``, ``processing``, then ``completed`` with
    its order or ``failed`` with the problem (a declined card, the units gone). Another
    customer's purchase is a 404."""
    return await service.purchase_status(runtime.db, sale_id, purchase_id, user.id)


router.include_router(public)
router.include_router(products)
router.include_router(admin)
router.include_router(flash)
