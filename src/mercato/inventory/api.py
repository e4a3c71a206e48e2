"""Inventory endpoints: the staff back office under ``/api/admin/inventory`` and the public
availability answer (in stock or not, plus a low-stock hint; never the exact count)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from mercato.identity.deps import ApiDestination, StaffUser
from mercato.inventory import service
from mercato.inventory.schemas import (
    AdjustIn,
    AvailabilityOut,
    LedgerCheckOut,
    LedgerDifferenceOut,
    ReceiveIn,
    ReleaseIn,
    ReservationOut,
    ReserveIn,
    StockChangeOut,
    StockLevelOut,
    VariantStockOut,
    WarehouseIn,
    WarehouseOut,
    WarehousePatch,
)
from mercato.openapi import problems
from mercato.problems import Problem, not_found
from mercato.runtime import RuntimeDep, UowDep

router = APIRouter(tags=["inventory"])

ADMIN = "/api/admin/inventory"
MAX_AVAILABILITY_IDS = 100
# 1 to 100 comma-separated ids of 1 to 40 characters, no spaces or control characters.
_ID = r"[^,\x00-\x20]{1,40}"
VARIANT_ID_LIST = rf"^{_ID}(,{_ID}){{0,{MAX_AVAILABILITY_IDS - 1}}}$"


@router.post(
    f"{ADMIN}/warehouses", status_code=201, response_model=WarehouseOut, responses=problems(409)
)
async def create_warehouse(body: WarehouseIn, uow: UowDep, _: StaffUser) -> WarehouseOut:
    """Create a warehouse and the countries it ships to."""
    created = await service.create_warehouse(
        uow,
        code=body.code,
        name=body.name,
        countries=body.countries,
        region=body.region,
        handling_days=body.handling_days,
    )
    return WarehouseOut.of(created)


@router.patch(f"{ADMIN}/warehouses/{{code}}", response_model=WarehouseOut)
async def update_warehouse(
    code: str, body: WarehousePatch, uow: UowDep, _: StaffUser
) -> WarehouseOut:
    """Change how many business days the warehouse takes to dispatch an order (delivery
    estimates count from it)."""
    return WarehouseOut.of(await service.set_handling_days(uow, code, body.handling_days))


@router.get(f"{ADMIN}/warehouses", response_model=list[WarehouseOut])
async def list_warehouses(uow: UowDep, _: StaffUser) -> list[WarehouseOut]:
    return [WarehouseOut.of(w) for w in await service.list_warehouses(uow)]


@router.post(f"{ADMIN}/receive", response_model=StockChangeOut)
async def receive(body: ReceiveIn, uow: UowDep, _: StaffUser) -> StockChangeOut:
    """Goods arrived: add ``quantity`` units of ``sku`` to ``warehouse``."""
    variant = await service.resolve_variant(uow, body.sku)
    level = await service.receive(uow, variant, body.warehouse, body.quantity, body.reference)
    return StockChangeOut(variant_id=variant.id, sku=variant.sku, stock=StockLevelOut.of(level))


@router.post(f"{ADMIN}/adjust", response_model=StockChangeOut, responses=problems(409))
async def adjust(body: AdjustIn, uow: UowDep, _: StaffUser) -> StockChangeOut:
    """Correct the shelf count by ``delta`` (never below what is reserved), with a reason."""
    variant = await service.resolve_variant(uow, body.sku)
    level = await service.adjust(uow, variant, body.warehouse, body.delta, body.reason)
    return StockChangeOut(variant_id=variant.id, sku=variant.sku, stock=StockLevelOut.of(level))


@router.get(f"{ADMIN}/reservations", response_model=list[ReservationOut])
async def list_reservations(
    uow: UowDep,
    _: StaffUser,
    state: Literal["active", "committed", "released", "expired"] | None = "active",
    sku: Annotated[str | None, Query(max_length=64)] = None,
    owner: Annotated[str | None, Query(max_length=80)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReservationOut]:
    """Reservations, newest first (active ones unless ``state`` says otherwise)."""
    variant_id = None
    if sku is not None:
        variant_id = (await service.resolve_variant(uow, sku)).id
    found = await service.list_reservations(
        uow, state=state, variant_id=variant_id, owner=owner, limit=limit
    )
    return [ReservationOut.of(r) for r in found]


@router.post(
    f"{ADMIN}/reservations",
    status_code=201,
    response_model=list[ReservationOut],
    responses=problems(409),
)
async def reserve(
    body: ReserveIn, uow: UowDep, runtime: RuntimeDep, _: StaffUser
) -> list[ReservationOut]:
    """Hold stock for an owner by hand (a phone order): all lines or nothing."""
    lines = []
    for i, line in enumerate(body.lines):
        variant = await service.resolve_variant(uow, line.sku, field=f"lines.{i}.sku")
        lines.append((variant.id, line.quantity))
    held = await service.reserve(
        uow,
        body.owner,
        lines,
        country=body.country,
        warehouse=body.warehouse,
        ttl_seconds=body.ttl_seconds or runtime.settings.reservation_ttl_seconds,
    )
    return [ReservationOut.of(r) for r in held]


@router.post(f"{ADMIN}/reservations/{{owner}}/commit", response_model=list[ReservationOut])
async def commit(owner: str, uow: UowDep, _: StaffUser) -> list[ReservationOut]:
    """Sell what the owner holds; a second call commits nothing more."""
    return [ReservationOut.of(r) for r in await service.commit(uow, owner)]


@router.post(f"{ADMIN}/reservations/{{owner}}/release", response_model=list[ReservationOut])
async def release(
    owner: str, uow: UowDep, _: StaffUser, body: ReleaseIn | None = None
) -> list[ReservationOut]:
    """Give the owner's holds back; a second call releases nothing more."""
    reason = body.reason if body is not None else ReleaseIn().reason
    released = await service.release(uow, owner, reason)
    return [ReservationOut.of(r) for r in released]


@router.get(f"{ADMIN}/check", response_model=LedgerCheckOut)
async def check(uow: UowDep, _: StaffUser) -> LedgerCheckOut:
    """Verify every stock row against its ledger and its active reservations."""
    differences = await service.check_ledger(uow)
    return LedgerCheckOut(
        ok=not differences,
        rule=service.LEDGER_RULE,
        stock_rows=await service.count_stock_rows(uow),
        differences=[LedgerDifferenceOut.of(d) for d in differences],
    )


@router.get(f"{ADMIN}/{{sku}}", response_model=VariantStockOut)
async def variant_stock(sku: str, uow: UowDep, _: StaffUser) -> VariantStockOut:
    """A variant's stock in each warehouse and its active reservations."""
    try:
        variant = await service.resolve_variant(uow, sku)
    except Problem as exc:
        raise not_found("Variant", sku) from exc
    levels = await service.stock_for_variant(uow, variant.id)
    held = await service.active_reservations(uow, variant_id=variant.id, limit=1000)
    return VariantStockOut(
        variant_id=variant.id,
        sku=variant.sku,
        title=f"{variant.product_title} {variant.title}".strip(),
        on_hand=sum(s.on_hand for s in levels),
        reserved=sum(s.reserved for s in levels),
        available=sum(s.available for s in levels),
        warehouses=[StockLevelOut.of(s) for s in levels],
        reservations=[ReservationOut.of(r) for r in held],
    )


@router.get("/api/inventory/availability", response_model=dict[str, AvailabilityOut])
async def availability(
    uow: UowDep,
    runtime: RuntimeDep,
    destination: ApiDestination,
    variant_ids: Annotated[str, Query(pattern=VARIANT_ID_LIST, examples=["var_1,var_2"])],
) -> dict[str, AvailabilityOut]:
    """``{variant_id: {in_stock, available_hint, available_elsewhere}}`` for up to 100
    comma-separated ids, for delivery to the destination (``?country=``, else the customer's
    default address, else the shop's country): stock only warehouses shipping elsewhere hold is
    not in stock, and says ``available_elsewhere``."""
    spreads = await service.stock_spreads(uow, variant_ids.split(","))
    threshold = runtime.settings.low_stock_threshold
    country = destination.country
    return {
        v: AvailabilityOut(
            in_stock=s.for_country(country) > 0,
            available_hint=service.low_stock_hint(s.for_country(country), threshold),
            available_elsewhere=s.only_elsewhere(country),
        )
        for v, s in spreads.items()
    }
